#!/usr/bin/python3
"""kafka-python against a Freshet broker, for tests/Freshet.Integration.Tests/Compatibility.

Run with the Debian interpreter (/usr/bin/python3, package python3-kafka). Every command prints one
JSON object on the last line of stdout; the C# test parses and checks it. Client logs go to stderr
(--debug for DEBUG level).

  kafka_python_client.py admin --bootstrap H:P --topic T [--topic T2 ...] --partitions 3
      KafkaAdminClient: create_topics, create the first again (expects TopicAlreadyExistsError),
      list_topics, describe_topics.
  kafka_python_client.py create --bootstrap H:P[,H:P] --topic T --partitions 3 --timeout S
      For a broker that may still be starting: KafkaAdminClient (waiting up to S seconds for the
      broker's answers, where kafka-python's defaults give up after 2 to 30) creates T once, then
      prints the create error code, T's partitions as describe_topics reports them (asked again while
      the broker it asks has not applied the new topic yet), and the brokers kafka-python's cluster
      metadata lists.
  kafka_python_client.py configs --bootstrap H:P --topic T
      KafkaAdminClient (AlterConfigs, the non-incremental API, and DescribeConfigs v1 with
      synonyms): creates T with retention.ms=1000000, replaces its configs with cleanup.policy=compact,
      sets log.retention.ms on broker 1, tries the read-only num.partitions on it; prints each
      answer's error codes and the values and sources DescribeConfigs then gives.
  kafka_python_client.py roundtrip --bootstrap H:P --topic T --partitions 3 --messages N
                                   [--codec none|gzip|snappy|lz4|zstd] [--api-version 0.10.1]
      KafkaAdminClient creates the topic (unless it exists), KafkaProducer sends N keyed messages
      (with headers when the protocol has them), then a KafkaConsumer with assign() +
      seek_to_beginning() and no group reads every partition to its end.
  A codec whose Python module does not import makes KafkaProducer refuse it; roundtrip then prints
  {"producer_error": ...} instead of failing.
  kafka_python_client.py group --bootstrap H:P --topic T --group G --expect-partitions K
                               [--member NAME --members M --barrier DIR]
      A KafkaConsumer with group_id G subscribes to T (the topic is filled beforehand), reads the
      partitions it is assigned to their end offsets, commits and leaves the group. Only records
      polled while it owns K partitions count: an assignment of another size is a step on the way
      (a member still joining), so what it read then is dropped, not committed, and read again by
      the partition's final owner. With --barrier, after committing it writes DIR/done-NAME and
      stays in the group until M members have done so, so that the members' assignments are
      those of one generation.
  kafka_python_client.py produce-seq --bootstrap H:P[,H:P] --topic T --messages N --rate R
      A KafkaProducer (acks=all, retries, one request in flight) sends the values 0..N-1 to
      partition 0 at about R a second; prints how many were acknowledged and how many failed, and
      the first error. For failover tests: a broker may die meanwhile.
  kafka_python_client.py consume-seq --bootstrap H:P[,H:P] --topic T --messages N --timeout S
      A KafkaConsumer (assign partition 0, no group) reads from the beginning until it has seen
      every value 0..N-1 or S seconds pass; prints how many distinct values it saw, and whether a
      value was first seen after a larger one (a reordering).
"""

import argparse
import json
import logging
import os
import sys
import time

import kafka
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.errors import TopicAlreadyExistsError

# gzip is in the standard library; snappy, lz4 and zstd need python3-snappy, python3-lz4 and
# python3-zstandard, which python3-kafka does not depend on.
CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


def parse_version(text):
    return tuple(int(x) for x in text.split(".")) if text else None


def cmd_admin(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id="freshet-compat-admin", request_timeout_ms=10000)
    try:
        created = admin.create_topics([NewTopic(t, args.partitions, 1) for t in args.topic], timeout_ms=10000)
        create_errors = {t: code for (t, code, _msg) in created.topic_errors}
        try:
            admin.create_topics([NewTopic(args.topic[0], args.partitions, 1)], timeout_ms=10000)
            duplicate = "no error"
        except TopicAlreadyExistsError as e:
            duplicate = type(e).__name__
        listed = sorted(admin.list_topics())
        described = {}
        for t in admin.describe_topics(args.topic):
            described[t["topic"]] = {
                "error_code": t["error_code"],
                "partitions": sorted([{"partition": p["partition"], "leader": p["leader"], "replicas": p["replicas"], "isr": p["isr"]}
                                      for p in t["partitions"]], key=lambda p: p["partition"]),
            }
        return {"kafka_python": kafka.__version__, "api_version": ".".join(map(str, admin.config["api_version"])),
                "create_errors": create_errors, "duplicate_create": duplicate, "listed": listed, "described": described}
    finally:
        admin.close()


def cmd_create(args):
    wait_ms = int(args.timeout * 1000)
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id="freshet-compat-create",
                             api_version_auto_timeout_ms=wait_ms, request_timeout_ms=wait_ms)
    try:
        created = admin.create_topics([NewTopic(args.topic, args.partitions, 1)], timeout_ms=wait_ms)
        (_topic, code, message) = created.topic_errors[0]
        # The controller has committed the topic; the broker describe_topics asks may apply it a moment later.
        deadline = time.monotonic() + args.timeout
        described = admin.describe_topics([args.topic])[0]
        while described["error_code"] != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
            described = admin.describe_topics([args.topic])[0]
        brokers = sorted([[b.nodeId, b.host, b.port] for b in admin._client.cluster.brokers()])
        return {"kafka_python": kafka.__version__, "create_error": code, "create_message": message,
                "describe_error": described["error_code"],
                "partitions": sorted(p["partition"] for p in described["partitions"]), "brokers": brokers}
    finally:
        admin.close()


def cmd_configs(args):
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id="freshet-compat-configs", request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(args.topic, 1, 1, topic_configs={"retention.ms": "1000000"})], timeout_ms=10000)

        def alter(resource):
            response = admin.alter_configs([resource])
            return [r[0] for r in response.resources]

        def describe(resource):
            entries = {}
            for response in admin.describe_configs([resource], include_synonyms=True):
                for (_code, _msg, _type, _name, configs) in response.resources:
                    for c in configs:
                        entries[c[0]] = {"value": c[1], "read_only": c[2], "source": c[3]}
            return entries

        topic = ConfigResource(ConfigResourceType.TOPIC, args.topic, configs={"cleanup.policy": "compact"})
        replaced = alter(topic)
        topic_after = describe(ConfigResource(ConfigResourceType.TOPIC, args.topic))
        broker_set = alter(ConfigResource(ConfigResourceType.BROKER, "1", configs={"log.retention.ms": "7200000"}))
        broker_read_only = alter(ConfigResource(ConfigResourceType.BROKER, "1", configs={"num.partitions": "5"}))
        broker_after = describe(ConfigResource(ConfigResourceType.BROKER, "1"))
        topic_final = describe(ConfigResource(ConfigResourceType.TOPIC, args.topic))
        pick = lambda d, keys: {k: d[k] for k in keys if k in d}
        return {"replaced": replaced, "topic": pick(topic_after, ["cleanup.policy", "retention.ms"]),
                "broker_set": broker_set, "broker_read_only": broker_read_only,
                "broker": pick(broker_after, ["log.retention.ms", "num.partitions"]),
                "topic_final": pick(topic_final, ["retention.ms"])}
    finally:
        admin.close()


def cmd_roundtrip(args):
    api_version = parse_version(args.api_version)
    codec = None if args.codec == "none" else args.codec
    common = {"bootstrap_servers": args.bootstrap, "request_timeout_ms": 10000}
    if api_version:
        common["api_version"] = api_version
    admin = KafkaAdminClient(bootstrap_servers=args.bootstrap, client_id="freshet-compat-admin", request_timeout_ms=10000)
    try:
        admin.create_topics([NewTopic(args.topic, args.partitions, 1)], timeout_ms=10000)
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()
    try:
        producer = KafkaProducer(client_id="freshet-compat-producer", acks="all", compression_type=codec, linger_ms=5, **common)
    except AssertionError as e:
        # kafka-python refuses a codec whose library does not import: "Libraries for snappy compression codec not found".
        return {"kafka_python": kafka.__version__, "codec": args.codec, "producer_error": str(e)}
    used_version = producer.config["api_version"]
    with_headers = used_version >= (0, 11)  # headers need record batches (magic 2)
    futures = []
    for i in range(args.messages):
        headers = [("seq", str(i).encode()), ("codec", args.codec.encode())] if with_headers else None
        futures.append(producer.send(args.topic, key=("key-%d" % (i % 7)).encode(), value=("value-%d" % i).encode(), headers=headers))
    producer.flush(timeout=20)
    sent = []
    for i, f in enumerate(futures):
        md = f.get(timeout=20)
        sent.append({"seq": i, "partition": md.partition, "offset": md.offset})
    producer.close(timeout=5)

    consumer = KafkaConsumer(client_id="freshet-compat-consumer", group_id=None, enable_auto_commit=False,
                             fetch_max_wait_ms=100, **common)
    try:
        partitions = sorted(consumer.partitions_for_topic(args.topic) or [])
        tps = [TopicPartition(args.topic, p) for p in partitions]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        if consumer.config["api_version"] >= (0, 10, 1):
            end = {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}  # ListOffsets v1+
        else:
            # kafka-python's end_offsets() needs ListOffsets v1 (0.10.1+); the topic is new, so its
            # end is one past the last offset the producer was given.
            end = {p: 1 + max([s["offset"] for s in sent if s["partition"] == p], default=-1) for p in partitions}
        received = []
        deadline = time.monotonic() + args.timeout
        while any(consumer.position(tp) < end[tp.partition] for tp in tps):
            if time.monotonic() > deadline:
                raise TimeoutError("positions %s did not reach %s" % ({tp.partition: consumer.position(tp) for tp in tps}, end))
            for tp, records in consumer.poll(timeout_ms=200).items():
                for r in records:
                    received.append({
                        "partition": r.partition, "offset": r.offset, "timestamp": r.timestamp,
                        "key": r.key.decode() if r.key is not None else None,
                        "value": r.value.decode() if r.value is not None else None,
                        "headers": [[k, v.decode()] for k, v in (r.headers or [])],
                    })
        return {"kafka_python": kafka.__version__, "codec": args.codec,
                "api_version": ".".join(map(str, used_version)),
                "consumer_api_version": ".".join(map(str, consumer.config["api_version"])),
                "partitions": partitions, "end_offsets": {str(p): o for p, o in end.items()},
                "sent": sent, "received": received}
    finally:
        consumer.close()


def cmd_group(args):
    consumer = KafkaConsumer(args.topic, bootstrap_servers=args.bootstrap, client_id="freshet-compat-" + args.member,
                             group_id=args.group, auto_offset_reset="earliest", enable_auto_commit=False,
                             session_timeout_ms=6000, heartbeat_interval_ms=500, fetch_max_wait_ms=100, request_timeout_ms=10000)
    try:
        deadline = time.monotonic() + args.timeout
        assigned = set()
        end = {}
        received = []
        rebalances = 0
        while True:
            if time.monotonic() > deadline:
                raise TimeoutError("assignment %s (expected %d partitions), positions %s, end offsets %s" % (
                    sorted(tp.partition for tp in assigned), args.expect_partitions,
                    {tp.partition: consumer.position(tp) for tp in assigned}, {tp.partition: o for tp, o in end.items()}))
            batch = consumer.poll(timeout_ms=200)
            now_assigned = consumer.assignment()
            if now_assigned != assigned:
                # A new generation: positions restarted from the committed offsets, so does the count
                # (the records this poll returned are already the new assignment's).
                assigned = set(now_assigned)
                rebalances += 1
                received = []
                end = consumer.end_offsets(list(assigned)) if len(assigned) == args.expect_partitions else {}
            if len(assigned) != args.expect_partitions:
                continue
            for tp, records in batch.items():
                for r in records:
                    received.append({"partition": r.partition, "offset": r.offset, "value": r.value.decode()})
            if all(consumer.position(tp) >= end[tp] for tp in assigned):
                break
        consumer.commit()
        committed = {str(tp.partition): consumer.committed(tp) for tp in sorted(assigned, key=lambda t: t.partition)}
        generation = getattr(consumer._coordinator, "_generation", None)
        member_id = getattr(generation, "member_id", None)
        if args.barrier:
            with open(os.path.join(args.barrier, "done-" + args.member), "w") as f:
                f.write(member_id or "")
            while len([n for n in os.listdir(args.barrier) if n.startswith("done-")]) < args.members:
                if time.monotonic() > deadline:
                    raise TimeoutError("the other members did not finish: %s" % os.listdir(args.barrier))
                consumer.poll(timeout_ms=100)
        return {"kafka_python": kafka.__version__, "member": args.member, "member_id": member_id,
                "assignment": sorted(tp.partition for tp in assigned), "assignments_seen": rebalances,
                "end_offsets": {str(tp.partition): o for tp, o in end.items()}, "committed": committed, "received": received}
    finally:
        consumer.close()


def cmd_produce_seq(args):
    producer = KafkaProducer(client_id="freshet-failover-producer", bootstrap_servers=args.bootstrap.split(","),
                             acks="all", retries=1000, retry_backoff_ms=200, request_timeout_ms=10000,
                             max_in_flight_requests_per_connection=1, linger_ms=5, metadata_max_age_ms=5000)
    acked, failed, first_error = 0, 0, None
    outcome = {}

    def ok(i):
        outcome[i] = True

    def err(i, e):
        outcome[i] = e

    start = time.monotonic()
    for i in range(args.messages):
        if i % 100 == 0:
            ahead = i / args.rate - (time.monotonic() - start)
            if ahead > 0:
                time.sleep(ahead)
        f = producer.send(args.topic, value=str(i).encode(), partition=0)
        f.add_callback(lambda _md, i=i: ok(i))
        f.add_errback(lambda e, i=i: err(i, e))
    producer.flush(timeout=180)
    producer.close(timeout=10)
    for i in range(args.messages):
        r = outcome.get(i)
        if r is True:
            acked += 1
        else:
            failed += 1
            if first_error is None:
                first_error = "%d: %r" % (i, r)
    return {"acked": acked, "failed": failed, "first_error": first_error,
            "seconds": round(time.monotonic() - start, 1)}


def cmd_consume_seq(args):
    consumer = KafkaConsumer(client_id="freshet-failover-consumer", bootstrap_servers=args.bootstrap.split(","),
                             group_id=None, enable_auto_commit=False, fetch_max_wait_ms=200,
                             request_timeout_ms=10000, metadata_max_age_ms=5000)
    tp = TopicPartition(args.topic, 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    seen, last, reordered, records = set(), -1, None, 0
    deadline = time.monotonic() + args.timeout
    try:
        while len(seen) < args.messages and time.monotonic() < deadline:
            for _tp, batch in consumer.poll(timeout_ms=500).items():
                for r in batch:
                    records += 1
                    v = int(r.value.decode())
                    if v not in seen:
                        seen.add(v)
                        if v < last and reordered is None:
                            reordered = "%d first seen after %d" % (v, last)
                        last = max(last, v)
    finally:
        consumer.close()
    return {"distinct": len(seen), "records": records, "reordered": reordered}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["admin", "create", "configs", "roundtrip", "group", "produce-seq", "consume-seq"])
    parser.add_argument("--bootstrap")
    parser.add_argument("--topic", action="append", default=[])
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--codec", default="none", choices=CODECS)
    parser.add_argument("--api-version", default=None, help="force a protocol generation, e.g. 0.10.1 or 0.9 (default: probe the broker)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds to read everything back")
    parser.add_argument("--group", help="group: the consumer group id")
    parser.add_argument("--expect-partitions", type=int, default=1, help="group: how many partitions this member should own")
    parser.add_argument("--member", default="a", help="group: a name for this member (client id suffix, barrier file)")
    parser.add_argument("--members", type=int, default=1, help="group: members to wait for at the barrier")
    parser.add_argument("--barrier", help="group: a directory where members mark that they are done")
    parser.add_argument("--rate", type=float, default=1000.0, help="produce-seq: messages a second")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command != "admin":
        args.topic = args.topic[0]
    result = {"admin": cmd_admin, "create": cmd_create, "configs": cmd_configs, "roundtrip": cmd_roundtrip, "group": cmd_group,
              "produce-seq": cmd_produce_seq, "consume-seq": cmd_consume_seq}[args.command](args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
