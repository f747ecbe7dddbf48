#!/usr/bin/env node
// kafkajs against a Freshet broker, for tests/Freshet.Integration.Tests/Compatibility.
// Prints one JSON object on the last line of stdout; the C# test parses and checks it. kafkajs logs go
// to stderr (--debug for DEBUG level).
//
//   node kafkajs_client.js [roundtrip] --bootstrap H:P --topic T --partitions 3 --messages N [--codec none|gzip]
//                          [--idempotent] [--group G] [--more M]
//
// Admin: createTopics (with a topic config), createTopics of the same topic again, listTopics,
// fetchTopicMetadata, describeConfigs. Producer: one send() of N keyed messages with headers.
// Admin again: fetchTopicOffsets after the send. Then a consumer in group G (subscribe fromBeginning,
// kafkajs' default auto-commit) reads every partition to its end while admin.describeGroups looks at
// the group, and disconnects (leaving the group); admin.fetchOffsets reads what it committed. M more
// messages are sent and a second consumer in the same group reads only those, from the committed offsets.
//
//   node kafkajs_client.js member --bootstrap H:P --topic T --group G --expect-partitions K
//                          [--member NAME --members M --barrier DIR]
//
// One member of group G on a filled topic: reads the partitions it is assigned to their end and commits
// (autoCommit off, commitOffsets). Only messages seen while it owns K partitions count: an assignment of
// another size is a step on the way (a member still joining), and what it read then is not committed, so
// the partition's final owner reads it again. With --barrier it then writes DIR/done-NAME and stays in the
// group until M members have, so the members' assignments are those of one generation.
//
// Codecs: kafkajs ships GZIP only; Snappy, LZ4 and ZSTD need extra codec packages that are not installed.

'use strict';
// Silences the v2 note about the default partitioner (murmur2, as Java's client) before kafkajs loads.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const fs = require('fs');
const path = require('path');
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes, AssignerProtocol } = require('kafkajs');

function parseArgs(argv) {
  const args = {
    command: 'roundtrip', partitions: 3, messages: 100, codec: 'none', idempotent: false, debug: false,
    more: 30, expectPartitions: 1, member: 'a', members: 1, timeoutMs: 20000,
  };
  let i = 0;
  if (argv.length > 0 && !argv[0].startsWith('--')) args.command = argv[i++];
  for (; i < argv.length; i++) {
    const a = argv[i];
    const next = () => {
      if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--bootstrap': args.bootstrap = next(); break;
      case '--topic': args.topic = next(); break;
      case '--partitions': args.partitions = parseInt(next(), 10); break;
      case '--messages': args.messages = parseInt(next(), 10); break;
      case '--codec': args.codec = next(); break;
      case '--idempotent': args.idempotent = true; break;
      case '--group': args.group = next(); break;
      case '--more': args.more = parseInt(next(), 10); break;
      case '--expect-partitions': args.expectPartitions = parseInt(next(), 10); break;
      case '--member': args.member = next(); break;
      case '--members': args.members = parseInt(next(), 10); break;
      case '--barrier': args.barrier = next(); break;
      case '--timeout-ms': args.timeoutMs = parseInt(next(), 10); break;
      case '--debug': args.debug = true; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!['roundtrip', 'member'].includes(args.command)) throw new Error(`unknown command ${args.command}`);
  if (!args.bootstrap || !args.topic) throw new Error('--bootstrap and --topic are required');
  if (args.command === 'member' && !args.group) throw new Error('member needs --group');
  if (!['none', 'gzip'].includes(args.codec)) throw new Error(`codec ${args.codec}: kafkajs has gzip built in, others need codec packages`);
  return args;
}

// kafkajs logs through console.log by default; keep stdout for the JSON result.
const stderrLogCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log;
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
};

// Short waits so that a consumer notices a rebalance quickly and disconnect() does not sit in a long poll.
const consumerSettings = { sessionTimeout: 6000, heartbeatInterval: 500, rebalanceTimeout: 10000, maxWaitTimeInMs: 200 };

function withDeadline(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function describeGroupJson(g) {
  return {
    groupId: g.groupId, state: g.state, protocolType: g.protocolType, protocol: g.protocol,
    members: g.members.map(m => {
      const a = m.memberAssignment && m.memberAssignment.length > 0 ? AssignerProtocol.MemberAssignment.decode(m.memberAssignment) : null;
      return { memberId: m.memberId, clientId: m.clientId, clientHost: m.clientHost, assignment: a ? a.assignment : {} };
    }),
  };
}

async function committedOffsets(admin, groupId, topic) {
  const offsets = await admin.fetchOffsets({ groupId, topics: [topic] });
  const t = offsets.find(o => o.topic === topic);
  return Object.fromEntries((t ? t.partitions : []).map(p => [String(p.partition), Number(p.offset)]));
}

// One consumer of the group reading the topic (subscribed fromBeginning) until each partition reaches
// its end offset in `ends`; `whileMember` runs before it disconnects (leaves the group).
async function consumeAsGroupMember(kafka, args, ends, whileMember) {
  const consumer = kafka.consumer({ groupId: args.group, ...consumerSettings });
  const received = [];
  const last = {};
  let memberId = null;
  let resolveDone;
  const done = new Promise(r => { resolveDone = r; });
  const atEnd = () => Object.entries(ends).every(([p, end]) => end === 0 || (last[p] !== undefined && last[p] + 1 >= end));
  consumer.on(consumer.events.GROUP_JOIN, e => { memberId = e.payload.memberId; });
  await consumer.connect();
  try {
    await consumer.subscribe({ topic: args.topic, fromBeginning: true });
    await consumer.run({
      eachMessage: async ({ partition, message }) => {
        received.push({ partition, offset: Number(message.offset), key: message.key ? message.key.toString() : null,
          value: message.value ? message.value.toString() : null,
          headers: Object.fromEntries(Object.entries(message.headers || {}).map(([k, v]) => [k, v.toString()])),
          timestamp: Number(message.timestamp) });
        last[partition] = Math.max(last[partition] ?? -1, Number(message.offset));
        if (atEnd()) resolveDone();
      },
    });
    if (atEnd()) resolveDone();
    await withDeadline(done, args.timeoutMs, 'reading the topic through the group');
    const during = whileMember ? await whileMember() : undefined;
    return { memberId, received, during };
  } finally {
    await consumer.disconnect();
  }
}

async function roundtripGroup(kafka, admin, producer, args, result) {
  const ends = () => admin.fetchTopicOffsets(args.topic).then(os => Object.fromEntries(os.map(o => [String(o.partition), Number(o.high)])));
  const firstEnds = await ends();
  const first = await consumeAsGroupMember(kafka, args, firstEnds,
    async () => describeGroupJson((await admin.describeGroups([args.group])).groups[0]));
  result.group = args.group;
  result.consumed = { memberId: first.memberId, received: first.received, describedWhileMember: first.during };
  result.committedAfterFirst = await committedOffsets(admin, args.group, args.topic);
  result.describedAfterLeave = describeGroupJson((await admin.describeGroups([args.group])).groups[0]);

  // More messages, then another consumer of the same group: it starts at the committed offsets.
  const more = [];
  for (let i = 0; i < args.more; i++) {
    const seq = args.messages + i;
    more.push({ key: `key-${seq % 7}`, value: `value-${seq}`, headers: { seq: String(seq), client: 'kafkajs' } });
  }
  await producer.send({ topic: args.topic, acks: -1, timeout: 10000, messages: more });
  const second = await consumeAsGroupMember(kafka, args, await ends());
  result.resumed = { memberId: second.memberId, received: second.received };
  result.committedAfterSecond = await committedOffsets(admin, args.group, args.topic);
  result.listedGroups = (await admin.listGroups()).groups.map(g => ({ groupId: g.groupId, protocolType: g.protocolType }));
}

async function member(kafka, args) {
  const admin = kafka.admin();
  await admin.connect();
  const consumer = kafka.consumer({ groupId: args.group, ...consumerSettings });
  try {
    const ends = Object.fromEntries((await admin.fetchTopicOffsets(args.topic)).map(o => [o.partition, Number(o.high)]));
    let assigned = [];
    let joins = 0;
    let memberId = null;
    let received = [];
    let last = {};
    let resolveDone;
    const done = new Promise(r => { resolveDone = r; });
    const atEnd = () => assigned.length === args.expectPartitions
      && assigned.every(p => ends[p] === 0 || (last[p] !== undefined && last[p] + 1 >= ends[p]));
    consumer.on(consumer.events.GROUP_JOIN, e => {
      // A new generation: kafkajs starts again from the committed offsets, and so does the count.
      assigned = (e.payload.memberAssignment[args.topic] || []).slice().sort((a, b) => a - b);
      memberId = e.payload.memberId;
      joins++;
      received = [];
      last = {};
      if (atEnd()) resolveDone();
    });
    await consumer.connect();
    await consumer.subscribe({ topic: args.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachMessage: async ({ partition, message }) => {
        if (assigned.length !== args.expectPartitions || !assigned.includes(partition)) return;
        received.push({ partition, offset: Number(message.offset), value: message.value.toString() });
        last[partition] = Math.max(last[partition] ?? -1, Number(message.offset));
        if (atEnd()) resolveDone();
      },
    });
    await withDeadline(done, args.timeoutMs, `member ${args.member} reading its ${args.expectPartitions} partitions`);
    const mine = assigned.slice();
    await consumer.commitOffsets(mine.map(p => ({ topic: args.topic, partition: p, offset: String((last[p] ?? -1) + 1) })));
    const committed = await committedOffsets(admin, args.group, args.topic);
    if (args.barrier) {
      fs.writeFileSync(path.join(args.barrier, `done-${args.member}`), memberId || '');
      const others = async () => {
        while (fs.readdirSync(args.barrier).filter(n => n.startsWith('done-')).length < args.members) await new Promise(r => setTimeout(r, 100));
      };
      await withDeadline(others(), args.timeoutMs, 'the other members');
    }
    return {
      kafkajs: require('kafkajs/package.json').version, member: args.member, memberId, assignment: mine, joins,
      endOffsets: Object.fromEntries(mine.map(p => [String(p), ends[p]])),
      committed: Object.fromEntries(mine.map(p => [String(p), committed[String(p)]])), received,
    };
  } finally {
    await consumer.disconnect();
    await admin.disconnect();
  }
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const kafka = new Kafka({
    clientId: 'freshet-compat-kafkajs',
    brokers: [args.bootstrap],
    connectionTimeout: 5000,
    requestTimeout: 10000,
    retry: { retries: 3, initialRetryTime: 100 },
    logLevel: args.debug ? logLevel.DEBUG : logLevel.WARN,
    logCreator: stderrLogCreator,
  });
  if (args.command === 'member') {
    process.stdout.write(JSON.stringify(await member(kafka, args)) + '\n');
    return;
  }
  args.group = args.group || `${args.topic}-group`;
  const result = { kafkajs: require('kafkajs/package.json').version, node: process.version, codec: args.codec, idempotent: args.idempotent };

  const admin = kafka.admin();
  await admin.connect();
  try {
    result.created = await admin.createTopics({
      topics: [{ topic: args.topic, numPartitions: args.partitions, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '3600000' }] }],
      waitForLeaders: true,
    });
    // kafkajs resolves to false when the topic already exists (TOPIC_ALREADY_EXISTS is not an error for it).
    result.createdAgain = await admin.createTopics({ topics: [{ topic: args.topic, numPartitions: args.partitions }] });
    result.listed = (await admin.listTopics()).sort();
    const md = await admin.fetchTopicMetadata({ topics: [args.topic] });
    result.metadata = md.topics.map(t => ({
      name: t.name,
      partitions: t.partitions.map(p => ({ partition: p.partitionId, leader: p.leader, replicas: p.replicas, isr: p.isr, errorCode: p.partitionErrorCode }))
        .sort((a, b) => a.partition - b.partition),
    }));
    const configs = await admin.describeConfigs({ resources: [{ type: ConfigResourceTypes.TOPIC, name: args.topic, configNames: ['retention.ms'] }], includeSynonyms: false });
    result.configs = configs.resources.map(r => ({ name: r.resourceName, errorCode: r.errorCode, entries: Object.fromEntries(r.configEntries.map(e => [e.configName, e.configValue])) }));

    const producer = kafka.producer({ idempotent: args.idempotent, maxInFlightRequests: args.idempotent ? 1 : undefined, allowAutoTopicCreation: false });
    await producer.connect();
    try {
      const messages = [];
      for (let i = 0; i < args.messages; i++) {
        messages.push({ key: `key-${i % 7}`, value: `value-${i}`, headers: { seq: String(i), client: 'kafkajs' } });
      }
      const sent = await producer.send({
        topic: args.topic,
        acks: -1,
        timeout: 10000,
        compression: args.codec === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None,
        messages,
      });
      result.sent = sent.map(r => ({ partition: r.partition, errorCode: r.errorCode, baseOffset: Number(r.baseOffset) })).sort((a, b) => a.partition - b.partition);
      result.offsets = (await admin.fetchTopicOffsets(args.topic))
        .map(o => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
        .sort((a, b) => a.partition - b.partition);
      await roundtripGroup(kafka, admin, producer, args, result);
    } finally {
      await producer.disconnect();
    }
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(e => {
  process.stderr.write(`kafkajs client failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
