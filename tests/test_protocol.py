"""Wire format: round trips, and every malformed frame is refused with a reason naming the problem."""
import msgpack
import numpy as np
import pytest

from envserver import protocol as P


def frames_bytes(frames):
    return [bytes(f) for f in frames]


def test_step_round_trip_keeps_arrays_and_fields():
    obs = np.arange(12, dtype=np.float32).reshape(3, 4)
    arrays = {"obs": obs, "reward": np.ones(3, np.float32), "cost": np.zeros((3, 1), np.float32),
              "terminated": np.zeros(3, np.uint8), "truncated": np.array([0, 1, 0], np.uint8)}
    msg = P.decode(frames_bytes(P.encode("STEP", {"t": 7}, arrays)))
    assert msg.type == "STEP" and msg["t"] == 7
    for name, arr in arrays.items():
        np.testing.assert_array_equal(msg.arrays[name], arr)
        assert msg.arrays[name].dtype == arr.dtype


def test_state_round_trip_keeps_entries_in_order():
    entries = [np.full((2, 3), i, np.float32) for i in range(3)]
    msg = P.decode(frames_bytes(P.encode("STATE", {"from": 1, "t": 4, "round": 2, "origins": [5, 0, 2],
                                                   "hops": [1, 1, 1]}, entries=entries)))
    assert msg["origins"] == [5, 0, 2]
    for got, want in zip(msg.entries, entries):
        np.testing.assert_array_equal(got, want)


def test_hello_round_trip():
    msg = P.decode(frames_bytes(P.encode("HELLO", {"agent": 3, "version": 1, "resume": True, "incarnation": 9})))
    assert msg.fields == {"agent": 3, "version": 1, "resume": True, "incarnation": 9}


def act(t=0, action=None):
    action = np.zeros((2, 3), np.float32) if action is None else action
    return frames_bytes(P.encode("ACT", {"agent": 0, "t": t}, {"action": action}))


def header(frames):
    """The readable map form of a positional header, to edit and send back as a map."""
    return P.header_map(msgpack.unpackb(frames[0]))


def rebuild(head, bufs):
    return [msgpack.packb(head)] + bufs


@pytest.mark.parametrize("make, reason", [
    (lambda: [], "empty message"),
    (lambda: [b"\xc1garbage"], "not valid msgpack"),
    (lambda: [msgpack.packb(42)], "neither a list nor a map"),
    (lambda: [msgpack.packb([99, 0, 0, []])], "unknown message type code 99"),
    (lambda: [msgpack.packb([True, 0, 0, []])], "unknown message type code True"),
    (lambda: [msgpack.packb([1, 2, 3])], "WELCOME header has 3 items, expected 13"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + ["nope"])] + act()[1:], "buffer list is malformed"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + [[["f4"]]])] + act()[1:], "malformed buffer descriptor"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + [[["f4", [2, 3]]]])] + act()[1:], "malformed buffer descriptor"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + [[[9, [2, 3]]]])] + act()[1:], "malformed buffer descriptor"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + [[[0, [1]]] * 2])] + act()[1:] * 2,
     "declares 2 buffers, expected 1"),
    (lambda: [msgpack.packb(msgpack.unpackb(act()[0])[:-1] + [[]])], "lacks buffer 'action'"),
    (lambda: [msgpack.packb({"type": "FLY"})], "unknown message type"),
    (lambda: [msgpack.packb({"type": [1, 2]})], "unknown message type"),
    (lambda: [msgpack.packb({"type": "STATE", "from": 1, "t": 0, "round": 1, "origins": [[1]], "hops": [0],
                             "bufs": [["e0", "f4", [1, 1]]]}), b"\0" * 4], "non-negative integers"),
    (lambda: [msgpack.packb({"type": "ACT", "t": 0, "bufs": []})], "lacks field 'agent'"),
    (lambda: [msgpack.packb({"type": "ACT", "agent": "x", "t": 0, "bufs": []})], "field 'agent' has type str"),
    (lambda: [msgpack.packb({"type": "ACT", "agent": True, "t": 0, "bufs": []})], "field 'agent' has type bool"),
    (lambda: [msgpack.packb({"type": "ACT", "agent": 0, "t": -1, "bufs": [["action", "f4", [0]]]}), b""],
     "negative"),
    (lambda: [msgpack.packb({"type": "ACT", "agent": 0, "t": 0, "bufs": []})], "lacks buffer 'action'"),
    (lambda: act()[:1], "declares 1 buffers but carries 0"),
    (lambda: act()[:1] + [act()[1][:-4]], "has 20 bytes"),
    (lambda: act() + [b"extra"], "declares 1 buffers but carries 2"),
    (lambda: rebuild({**header(act()), "bufs": [["action", "c16", [2, 3]]]}, act()[1:]), "unsupported dtype"),
    (lambda: rebuild({**header(act()), "bufs": [["action", "f4", [2, -3]]]}, act()[1:]), "invalid shape"),
    (lambda: rebuild({**header(act()), "bufs": [["action", "f4", [1, 1, 1, 1, 1, 6]]]}, act()[1:]), "invalid shape"),
    (lambda: rebuild({**header(act()), "bufs": [["action", "f4", [2**40]]]}, act()[1:]), "invalid shape"),
    (lambda: rebuild({**header(act()), "bufs": "nope"}, []), "buffer list is malformed"),
    (lambda: act(action=np.array([[np.nan, 0, 0], [0, 0, 0]], np.float32)), "NaN or inf"),
    (lambda: act(action=np.array([[np.inf, 0, 0], [0, 0, 0]], np.float32)), "NaN or inf"),
    (lambda: [b"\x00" * (P.MAX_HEADER_BYTES + 1)], "exceeds"),
])
def test_malformed_frames_are_refused_with_a_reason(make, reason):
    with pytest.raises(P.ProtocolError) as err:
        P.decode(make())
    assert reason in str(err.value)
    assert "\n" not in str(err.value)


def test_check_array_names_shape_and_dtype_mismatch():
    msg = P.decode(act())
    with pytest.raises(P.ProtocolError, match=r"shape \(2, 3\), expected \(2, 4\)"):
        P.check_array(msg, "action", (2, 4), np.float32)
    with pytest.raises(P.ProtocolError, match="dtype float32, expected int64"):
        P.check_array(msg, "action", (2, 3), np.int64)


def test_random_garbage_never_raises_anything_but_protocol_error():
    rng = np.random.default_rng(0)
    good = act()
    for _ in range(3000):
        frames = [bytearray(f) for f in good]
        k = rng.integers(0, 3)
        if k == 0:  # flip bytes in the header
            for _ in range(rng.integers(1, 4)):
                i = rng.integers(0, len(frames[0]))
                frames[0][i] = rng.integers(0, 256)
        elif k == 1:  # random frames
            frames = [bytes(rng.integers(0, 256, rng.integers(0, 64), dtype=np.uint8))
                      for _ in range(rng.integers(1, 4))]
        else:  # truncate a buffer
            frames[1] = frames[1][: rng.integers(0, len(frames[1]))]
        try:
            P.decode([bytes(f) for f in frames])
        except P.ProtocolError:
            pass
