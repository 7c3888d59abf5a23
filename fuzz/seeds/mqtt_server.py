#!/usr/bin/env python3
"""Writes the seed corpus of the mqtt_server fuzz target (fuzz/seeds/mqtt_server/).

Each seed is one mode byte (see fuzz_targets/mqtt_server.rs: 0 raw, 1 after a v3.1.1
CONNECT of acme:dev1, 2 after a v5 CONNECT, 3 after a v3.1.1 CONNECT of open:dev9; +4 also
sends an actuation) followed by valid MQTT 3.1.1 / 5 packets. Run from this directory.
"""
import os
import struct


def varint(n):
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def s(x):
    x = x.encode() if isinstance(x, str) else x
    return struct.pack(">H", len(x)) + x


def packet(first, body):
    return bytes([first]) + varint(len(body)) + body


def props(*items):
    body = b"".join(items)
    return varint(len(body)) + body


def connect(level, client_id, user=None, password=None, clean=True, keep_alive=60, will=None, properties=b""):
    flags = (0x02 if clean else 0) | (0x80 if user is not None else 0) | (0x40 if password is not None else 0)
    if will:
        flags |= 0x04 | (will["qos"] << 3)
    body = s("MQTT") + bytes([level, flags]) + struct.pack(">H", keep_alive)
    if level == 5:
        body += properties or props()
    body += s(client_id)
    if will:
        if level == 5:
            body += props(bytes([0x18]) + struct.pack(">I", 0))  # will delay interval
        body += s(will["topic"]) + s(will["payload"])
    if user is not None:
        body += s(user)
    if password is not None:
        body += s(password)
    return packet(0x10, body)


def publish(topic, payload, qos=0, pid=1, v5=False, properties=b"", retain=False, dup=False):
    body = s(topic) + (struct.pack(">H", pid) if qos else b"")
    if v5:
        body += properties or props()
    return packet(0x30 | (qos << 1) | (0x08 if dup else 0) | (1 if retain else 0), body + payload)


def subscribe(pid, filters, v5=False):
    body = struct.pack(">H", pid) + (props() if v5 else b"")
    for f, opts in filters:
        body += s(f) + bytes([opts])
    return packet(0x82, body)


def unsubscribe(pid, filters, v5=False):
    body = struct.pack(">H", pid) + (props() if v5 else b"") + b"".join(s(f) for f in filters)
    return packet(0xA2, body)


PINGREQ = packet(0xC0, b"")
DISCONNECT3 = packet(0xE0, b"")
DISCONNECT5_WILL = packet(0xE0, bytes([0x04]) + props())
READING = b'{"temperature": 21.5, "timestamp": "2024-01-31T12:00:00Z"}'

SEEDS = {
    # raw: the fuzzer writes CONNECT itself
    "raw_v3_connect": (0, connect(4, "c1", "acme:dev1", "s3cret")),
    "raw_v3_connect_publish": (0, connect(4, "c1", "acme:dev1", "s3cret") + publish("acme:dev1/attrs", READING, 1)),
    "raw_v3_persistent_will": (0, connect(4, "c2", "acme:dev1", "s3cret", clean=False,
                                          will={"qos": 1, "topic": "acme:dev1/attrs", "payload": b'{"online":false}'})),
    "raw_v3_mosca": (0, connect(4, "open:dev9") + publish("/open/dev9/attrs", b'{"a":1}')),
    "raw_v3_bad_secret": (0, connect(4, "c3", "acme:dev1", "wrong")),
    "raw_v5_connect_props": (0, connect(5, "c5", "acme:dev1", "s3cret", clean=False, properties=props(
        bytes([0x11]) + struct.pack(">I", 300),      # session expiry interval
        bytes([0x21]) + struct.pack(">H", 10),       # receive maximum
        bytes([0x27]) + struct.pack(">I", 65536),    # maximum packet size
        bytes([0x22]) + struct.pack(">H", 4),        # topic alias maximum
        bytes([0x26]) + s("k") + s("v"),             # user property
    ))),
    "raw_v5_empty_client_id": (0, connect(5, "", "acme:dev1", "s3cret")),
    "raw_v5_will": (0, connect(5, "c6", "acme:dev1", "s3cret",
                               will={"qos": 0, "topic": "acme:dev1/attrs", "payload": b'{"w":1}'}) + DISCONNECT5_WILL),
    # after a v3.1.1 CONNECT of acme:dev1
    "v3_publish_qos0": (1, publish("acme:dev1/attrs", READING)),
    "v3_publish_qos1_pipelined": (1, publish("acme:dev1/attrs", b'{"a":1}', 1, 1) + publish("acme:dev1/attrs", b'{"a":2}', 1, 2)),
    "v3_publish_foreign": (1, publish("acme:dev2/attrs", b'{"a":1}', 1)),
    "v3_publish_qos2": (1, publish("acme:dev1/attrs", b'{"a":1}', 2)),
    "v3_subscribe": (5, subscribe(7, [("acme:dev1/config", 1), ("/acme/dev1/config", 0), ("#", 0)])),
    "v3_unsubscribe": (1, subscribe(7, [("acme:dev1/config", 1)]) + unsubscribe(8, ["acme:dev1/config"])),
    "v3_ping_disconnect": (1, PINGREQ + DISCONNECT3),
    "v3_puback": (1, packet(0x40, struct.pack(">H", 1))),
    # after a v5 CONNECT of acme:dev1
    "v5_publish_props": (2, publish("acme:dev1/attrs", READING, 1, 3, v5=True, properties=props(
        bytes([0x01, 1]),                            # payload format indicator
        bytes([0x02]) + struct.pack(">I", 60),       # message expiry interval
        bytes([0x23]) + struct.pack(">H", 1),        # topic alias
        bytes([0x03]) + s("application/json"),       # content type
        bytes([0x26]) + s("k") + s("v"),             # user property
    ))),
    "v5_publish_alias_only": (2, publish("acme:dev1/attrs", b'{"a":1}', 0, v5=True, properties=props(bytes([0x23]) + struct.pack(">H", 1)))
                              + publish("", b'{"a":2}', 0, v5=True, properties=props(bytes([0x23]) + struct.pack(">H", 1)))),
    "v5_subscribe": (6, subscribe(9, [("acme:dev1/config", 0x01 | 0x04 | 0x20)], v5=True)),
    "v5_unsubscribe": (2, unsubscribe(10, ["acme:dev1/config", "x"], v5=True)),
    "v5_auth_ping_disconnect": (2, packet(0xF0, bytes([0x00]) + props()) + PINGREQ + DISCONNECT5_WILL),
    "v5_publish_bad_payload": (2, publish("acme:dev1/attrs", b"not json", 1, 4, v5=True)),
    # after a v3.1.1 CONNECT of open:dev9 (unsecured tenant, identity from the client id)
    "open_publish": (3, publish("open:dev9/attrs", b'{"x":[1,{"y":null}]}', 1)),
}

if __name__ == "__main__":
    os.makedirs("mqtt_server", exist_ok=True)
    for name, (mode, data) in SEEDS.items():
        with open(os.path.join("mqtt_server", name), "wb") as f:
            f.write(bytes([mode]) + data)
