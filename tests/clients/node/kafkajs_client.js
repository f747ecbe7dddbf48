#!/usr/bin/env node
// kafkajs against a Freshet broker, for tests/Freshet.Integration.Tests/Compatibility.
// Prints one JSON object on the last line of stdout; the C# test parses and checks it. kafkajs logs go
// to stderr (--debug for DEBUG level).
//
//   node kafkajs_client.js --bootstrap H:P --topic T --partitions 3 --messages N [--codec none|gzip] [--idempotent]
//
// Admin: createTopics (with a topic config), createTopics of the same topic again, listTopics,
// fetchTopicMetadata, describeConfigs. Producer: one send() of N keyed messages with headers.
// Admin again: fetchTopicOffsets after the send.
//
// Not done here: consuming. A kafkajs 2.x consumer always belongs to a consumer group (groupId is
// required, there is no assign()), so it needs FindCoordinator/JoinGroup/SyncGroup, which Freshet does
// not serve yet; the C# test reads what kafkajs produced with another client instead.
// Codecs: kafkajs ships GZIP only; Snappy, LZ4 and ZSTD need extra codec packages that are not installed.

'use strict';
// Silences the v2 note about the default partitioner (murmur2, as Java's client) before kafkajs loads.
process.env.KAFKAJS_NO_PARTITIONER_WARNING = '1';
const { Kafka, logLevel, CompressionTypes, ConfigResourceTypes } = require('kafkajs');

function parseArgs(argv) {
  const args = { partitions: 3, messages: 100, codec: 'none', idempotent: false, debug: false };
  for (let i = 0; i < argv.length; i++) {
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
      case '--debug': args.debug = true; break;
      default: throw new Error(`unknown argument ${a}`);
    }
  }
  if (!args.bootstrap || !args.topic) throw new Error('--bootstrap and --topic are required');
  if (!['none', 'gzip'].includes(args.codec)) throw new Error(`codec ${args.codec}: kafkajs has gzip built in, others need codec packages`);
  return args;
}

// kafkajs logs through console.log by default; keep stdout for the JSON result.
const stderrLogCreator = () => ({ namespace, level, label, log }) => {
  const { message, ...extra } = log;
  process.stderr.write(`${label} [${namespace}] ${message} ${JSON.stringify(extra)}\n`);
};

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
    } finally {
      await producer.disconnect();
    }
    result.offsets = (await admin.fetchTopicOffsets(args.topic))
      .map(o => ({ partition: o.partition, low: Number(o.low), high: Number(o.high) }))
      .sort((a, b) => a.partition - b.partition);
  } finally {
    await admin.disconnect();
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch(e => {
  process.stderr.write(`kafkajs client failed: ${e && e.stack ? e.stack : e}\n`);
  process.exit(1);
});
