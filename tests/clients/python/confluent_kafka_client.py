#!/usr/bin/python3
"""Debian's confluent-kafka (python3-confluent-kafka 1.7 on Debian's librdkafka 2.0.2) against a
Freshet broker, for tests/Freshet.Integration.Tests. Run with /usr/bin/python3. Prints one JSON
object on the last line of stdout; client logs go to stderr (--debug for librdkafka's protocol log).

  confluent_kafka_client.py create --bootstrap H:P[,H:P] --topic T --partitions 3 --timeout S
      AdminClient.create_topics(T) and waits for its result, then list_topics(T) (again while the
      broker asked has not applied the new topic yet): prints the
      create error (null when created), T's partitions, the brokers the metadata lists and the
      broker that answered it. Every wait is bounded by S seconds.
"""

import argparse
import json
import sys
import time

import confluent_kafka
from confluent_kafka.admin import AdminClient, NewTopic


def cmd_create(args):
    config = {"bootstrap.servers": args.bootstrap, "client.id": "freshet-compat-confluent", "socket.timeout.ms": int(args.timeout * 1000)}
    if args.debug:
        config["debug"] = "broker,protocol,metadata,admin"
    admin = AdminClient(config)
    futures = admin.create_topics([NewTopic(args.topic, args.partitions, 1)], request_timeout=args.timeout, operation_timeout=args.timeout)
    error = None
    try:
        futures[args.topic].result(timeout=args.timeout)
    except confluent_kafka.KafkaException as e:
        error = str(e.args[0])
    except Exception as e:  # concurrent.futures.TimeoutError and the like: the client gave up waiting
        error = f"{type(e).__name__}: {e}"
    # The controller has committed the topic; the broker list_topics asks may apply it a moment later.
    deadline = time.monotonic() + args.timeout
    while True:
        metadata = admin.list_topics(topic=args.topic, timeout=args.timeout)
        topic = metadata.topics.get(args.topic)
        if error is not None or (topic is not None and topic.error is None) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    return {
        "confluent_kafka": confluent_kafka.version()[0],
        "librdkafka": confluent_kafka.libversion()[0],
        "create_error": error,
        "topic_error": str(topic.error) if topic is not None and topic.error is not None else None,
        "partitions": sorted(topic.partitions.keys()) if topic is not None else [],
        "brokers": sorted([b.id, b.host, b.port] for b in metadata.brokers.values()),
        "answered_by": metadata.orig_broker_id,
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=["create"])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args()
    print(json.dumps({"create": cmd_create}[args.command](args)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
