"""Every message khop puts on a wire, and the one place where frames are parsed and validated.

A message is a list of ZeroMQ frames ``[header, buf0, buf1, ...]``: the header is msgpack naming
the type, the scalar fields and, for each following frame, its dtype and shape; each buffer frame
is the raw bytes of one numpy array. Arrays therefore never pass through msgpack (no copy, no
per-element encoding), and the receiver rebuilds them with ``np.frombuffer``.

The header comes in two forms that decode to the same message. khop sends the *positional* form,
``[type code, field values in the order of the table below, [[dtype code, shape] per buffer]]``
(codes are indices into the type and dtype tables; buffer names are implied: the type's declared
buffers in order, or ``e0, e1, …`` for STATE entries). It is 44 bytes shorter than a map, which
is most of a message's overhead on the wire: a 1-hop STATE of E = 8 halfcheetah rows has 320
bytes of payload. The readable *map* form, ``{"type": name, field: value, …, "bufs": [[name,
dtype, shape], …]}`` with the buffers in the declared order under the declared names, is accepted
from anyone (a hand-written client, a debugging session): it is turned positional and validated by
the same code.

Nothing from the wire is trusted: the header is size-capped before msgpack sees it, every buffer's
byte length must equal what its declared dtype and shape imply (lengths are *checked*, never used
to allocate), floats must be finite, and each type's required fields must be present with the
right Python types. Anything else raises :class:`ProtocolError` with a one-line reason that the
server sends back in an ERROR.

Message set (DESIGN.md §2, plus BYE so a run can end cleanly):

=========  ===========  ====================================================================
type       direction    fields / buffers
=========  ===========  ====================================================================
HELLO      agent → env  agent:int, version:int, resume:bool, incarnation:int
WELCOME    env → agent  agent, task, n_agents, n_envs, episode_length, seed, agents:[spec],
                        cost_names, cost_limits, deadline_s (the ACT deadline, which bounds the
                        agents' relay waits), incarnation (changes when the envserver restarts)
STEP       env → agent  t:int; obs[E,obs_dim] f32, reward[E] f32, cost[E,C] f32,
                        terminated[E] u1, truncated[E] u1, and for an agent whose spec says
                        action_mask: mask[E,n_actions] u1 (1 = available now)
ACT        agent → env  agent:int, t:int; action: [E,act_dim] f32 (continuous) | [E] i64;
                        a masked-out action is refused with ERROR and its copy steps with the
                        task's fallback action (the agent's other copies step as it chose)
ERROR      env → agent  reason:str
BYE        env → agent  reason:str (the run is over; agents checkpoint and exit)
STATE      agent ↔ agent  from:int, t:int, round:int, origins:[int], hops:[int];
                        one buffer per entry: the origin's obs rows [E, obs_dim] f32, or f2
                        when a communication budget quantises; a STATE with no origins is a
                        control marker ("nothing for you this round", see agentd/relay.py)
TOKEN      agent → agent  from:int, update:int, pos:int; token[T·E] f32: the sequential ratio
                        product M, handed along the update's DFS walk (agentd/token_walk.py)
QVALS      agent → agent  from:int, update:int, origin:int, hops:int; q[T·E] f32: an agent's
                        truncated shadow Q-values, relayed ≤ κ hops (agentd/learner/shadow_pg.py)
HEARTBEAT  agent ↔ agent  from:int, t:int, round:int (sent when a link has been quiet for a while, so
                        a neighbour can tell a slow agent from a dead one, agentd/liveness.py;
                        (t, round) is the last relay round the sender has sent, so a neighbour still
                        waiting for that round's message knows it was lost, agentd/relay.py)
=========  ===========  ====================================================================

:func:`wire_size` is the byte count every link counter and communication budget uses: each frame's
payload plus its ZMTP 3 frame header (1 flags byte + 1 length byte, or 8 for frames over 255 bytes).
TCP/IP headers are below what an application controls and are not counted.
"""
from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np
import zmq

PROTOCOL_VERSION = 3  # 2: positional headers; 3: STEP may carry an action mask
MAX_HEADER_BYTES = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # set as ZMQ_MAXMSGSIZE on every socket
MAX_BUFFERS = 4096
MAX_NDIM = 4

_DTYPES = {"f4": np.float32, "f2": np.float16, "i8": np.int64, "u1": np.uint8}
_NP_DTYPES = {k: np.dtype(v) for k, v in _DTYPES.items()}
_DTYPE_CODES = tuple(_DTYPES)  # a dtype's code in the positional header is its index here
_CODE_OF_DTYPE = {np.dtype(v): code for code, v in enumerate(_DTYPES.values())}

# type -> {field: accepted python types}; every listed field is required
_FIELDS: dict[str, dict[str, tuple[type, ...]]] = {
    "HELLO": {"agent": (int,), "version": (int,), "resume": (bool,), "incarnation": (int,)},
    "WELCOME": {
        "agent": (int,), "task": (str,), "n_agents": (int,), "n_envs": (int,),
        "episode_length": (int,), "seed": (int,), "agents": (list,),
        "cost_names": (list,), "cost_limits": (list,), "deadline_s": (float, int), "incarnation": (int,),
    },
    "STEP": {"t": (int,)},
    "ACT": {"agent": (int,), "t": (int,)},
    "ERROR": {"reason": (str,)},
    "BYE": {"reason": (str,)},
    "STATE": {"from": (int,), "t": (int,), "round": (int,), "origins": (list,), "hops": (list,)},
    "TOKEN": {"from": (int,), "update": (int,), "pos": (int,)},
    "QVALS": {"from": (int,), "update": (int,), "origin": (int,), "hops": (int,)},
    "HEARTBEAT": {"from": (int,), "t": (int,), "round": (int,)},
}
# buffers each type must carry, by name, in positional order (STATE carries a variable number)
_BUFFERS: dict[str, tuple[str, ...]] = {
    "STEP": ("obs", "reward", "cost", "terminated", "truncated", "mask"),
    "ACT": ("action",),
    "TOKEN": ("token",),
    "QVALS": ("q",),
}
_OPTIONAL: dict[str, tuple[str, ...]] = {"STEP": ("mask",)}  # trailing buffers a message may leave out
_TYPES = tuple(_FIELDS)  # a type's code in the positional header is its index here
_CODES = {name: code for code, name in enumerate(_TYPES)}


_ENTRY_NAMES = tuple(f"e{i}" for i in range(MAX_BUFFERS))  # STATE's buffer names, built once


def _buffer_names(msg_type: str, count: int) -> tuple[str, ...]:
    return _ENTRY_NAMES[:count] if msg_type == "STATE" else _BUFFERS.get(msg_type, ())


class ProtocolError(ValueError):
    """A frame that must be refused; ``str(err)`` is the one-line reason sent back in ERROR."""


@dataclass
class Message:
    type: str
    fields: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    entries: list[np.ndarray] = field(default_factory=list)  # STATE payload, in origins order

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]


def encode(msg_type: str, fields: dict[str, Any] | None = None,
           arrays: dict[str, np.ndarray] | None = None,
           entries: list[np.ndarray] | None = None) -> list[bytes | memoryview]:
    """Build the frame list for one message (positional header, see the module docstring). Arrays
    go out as their own frames, uncopied."""
    fields = fields or {}
    arrays = arrays or {}
    entries = entries or []
    names = _buffer_names(msg_type, len(entries))
    spec = _FIELDS.get(msg_type, {})
    if msg_type not in _CODES or fields.keys() != spec.keys() or tuple(arrays) != names[:len(arrays)]:
        raise ProtocolError(f"cannot encode {msg_type} with fields {sorted(fields)} and buffers {list(arrays)}")
    bufs = []
    frames: list[bytes | memoryview] = [b""]
    for name, arr in zip(names, [*arrays.values(), *entries]):
        arr = np.ascontiguousarray(arr)
        try:
            code = _CODE_OF_DTYPE[arr.dtype]
        except KeyError:
            raise ProtocolError(f"cannot send dtype {arr.dtype} in buffer {name!r}") from None
        bufs.append([code, list(arr.shape)])
        frames.append(arr.data.cast("B") if arr.size else b"")  # raw bytes, no copy
    frames[0] = _PACKER.pack([_CODES[msg_type], *[fields[name] for name in spec], bufs])
    return frames


_PACKER = msgpack.Packer(use_bin_type=True)  # one for the process: packb would build one per message


def header_map(header: Any) -> Any:
    """The map form of a decoded positional header (anything else is returned as it is, for the
    map checks to judge)."""
    if not isinstance(header, list):
        return header
    code = header[0] if header else None
    if not isinstance(code, int) or isinstance(code, bool) or not 0 <= code < len(_TYPES):
        raise ProtocolError(f"unknown message type code {code!r}")
    msg_type = _TYPES[code]
    names = list(_FIELDS[msg_type])
    if len(header) != len(names) + 2:
        raise ProtocolError(f"{msg_type} header has {len(header)} items, expected {len(names) + 2}")
    bufs = header[-1]
    if not isinstance(bufs, list) or len(bufs) > MAX_BUFFERS:
        raise ProtocolError(f"{msg_type} buffer list is malformed")
    if not all(isinstance(b, list) and len(b) == 2 and isinstance(b[0], int) and not isinstance(b[0], bool)
               and 0 <= b[0] < len(_DTYPE_CODES) for b in bufs):
        raise ProtocolError(f"{msg_type} has a malformed buffer descriptor")
    buf_names = _buffer_names(msg_type, len(bufs))
    if len(bufs) > len(buf_names):
        raise ProtocolError(f"{msg_type} declares {len(bufs)} buffers, expected {len(buf_names)}")
    return {"type": msg_type, **dict(zip(names, header[1:-1])),
            "bufs": [[name, _DTYPE_CODES[code], shape] for name, (code, shape) in zip(buf_names, bufs)]}


_MORE, _NOBLOCK = int(zmq.SNDMORE), int(zmq.NOBLOCK)
_SEND = zmq.backend.Socket.send  # ~0.3 µs a frame less than zmq.Socket.send, which wraps it in Python
_EVENTS, _POLLIN = int(zmq.EVENTS), int(zmq.POLLIN)


def readable(sock: zmq.Socket) -> bool:
    """Can a message be received from ``sock`` without blocking? Asks ZMQ_EVENTS, which costs no
    poll system call: strace counted 23 polls per lockstep on an agent, most of them this question
    asked of an inbox or a monitor socket that usually has nothing."""
    return bool(sock.getsockopt(_EVENTS) & _POLLIN)


def send(sock: zmq.Socket, frames: list, block: bool = False) -> None:
    """``sock.send_multipart(frames, copy=False)`` at a quarter of the cost: pyzmq's version does
    Python-level enum arithmetic on the flags for every frame (~20 µs for a two-frame STATE against
    ~5 µs here), and a lockstep of six agents sends six seven-frame STEPs and eighteen agent
    messages. Like it, a non-blocking send raises ``zmq.Again`` when the peer's queue is full
    (libzmq accepts or refuses a multipart message as a whole, at its first frame)."""
    flags = 0 if block else _NOBLOCK
    last = len(frames) - 1
    for i, frame in enumerate(frames):  # the Cython send itself: pyzmq's Python wrapper only adds draft options
        _SEND(sock, frame, flags | _MORE if i < last else flags, False)


def recv(sock: zmq.Socket, flags: int = 0) -> list[zmq.Frame]:
    """``sock.recv_multipart(copy=False)`` without its per-frame ``getsockopt(RCVMORE)``, which pyzmq
    answers through a Python enum lookup: the C receive already sets ``Frame.more``. A seven-frame STEP
    is read in ~4.5 µs instead of ~7 (bench/NOTES.md §19). Frames, not bytes: the decoder reads their
    buffers without a copy, and a ROUTER's identity frame carries the CurveZMQ User-Id."""
    frame = sock.recv(flags, copy=False)
    frames = [frame]
    while frame.more:
        frame = sock.recv(flags, copy=False)
        frames.append(frame)
    return frames


class TimedReceiver:
    """Receiving from one socket with a timeout in libzmq's own blocking receive (``RCVTIMEO``, set
    only when the wanted timeout changes): one call where ``Socket.poll`` builds a Python Poller for
    every wait and then a receive follows (bench/NOTES.md §19)."""

    def __init__(self, sock: zmq.Socket) -> None:
        self.sock = sock
        self._timeout_ms: int | None = None  # RCVTIMEO as set on the socket; None: libzmq's default

    def recv(self, timeout_ms: int) -> list[zmq.Frame] | None:
        """The next message's frames within ``timeout_ms`` (−1: wait for ever), or None."""
        if timeout_ms != self._timeout_ms:
            self.sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._timeout_ms = timeout_ms
        try:
            return recv(self.sock)
        except zmq.Again:
            return None


def frame_size(frame: Any) -> int:
    """Payload bytes of one frame (bytes, memoryview of any item size, or a received zmq.Frame)."""
    if isinstance(frame, memoryview):
        return frame.nbytes
    if isinstance(frame, (bytes, bytearray)):
        return len(frame)
    return len(_buffer_bytes(frame))


def wire_size(frames: list[Any]) -> int:
    """Bytes a message occupies on a ZMTP 3 stream: payloads plus 2 bytes of framing per frame
    (9 for a frame longer than 255 bytes). Used for every traffic counter and budget check."""
    total = 0
    for f in frames:
        n = frame_size(f)
        total += n + (2 if n <= 255 else 9)
    return total


def _buffer_bytes(frame: Any) -> memoryview:
    if isinstance(frame, (bytes, bytearray, memoryview)):
        return memoryview(frame)
    return frame.buffer  # zmq.Frame received with copy=False


def decode(frames: list[Any], max_bytes: int | None = None) -> Message:
    """Parse and structurally validate one message; raise ProtocolError naming what is wrong.

    ``max_bytes`` is the receiver's own size budget: ZMQ_MAXMSGSIZE drops a single oversized frame
    (and the connection) before we see it, this limit refuses a whole message politely with ERROR.
    Whatever the bytes, the only exception that leaves here is ProtocolError.
    """
    try:
        return _decode(frames, max_bytes)
    except ProtocolError:
        raise
    except Exception as err:  # a check we did not think of: still a refusal, never a crash
        raise ProtocolError(f"malformed message ({type(err).__name__})") from None


# Per type code, what the positional validator needs, worked out once instead of per message: the
# fields in order with their accepted types (bool admitted only where declared) and whether they must
# be non-negative, and the declared buffer names (None: STATE, whose count follows its origins).
_NONNEG = ("t", "agent", "from", "round", "update", "pos", "origin", "hops")
_FIELD_CHECKS = tuple(tuple((name, types, bool in types, name in _NONNEG) for name, types in _FIELDS[t].items())
                      for t in _TYPES)
_BUFFER_NAMES = tuple(None if t == "STATE" else _BUFFERS.get(t, ()) for t in _TYPES)
_FIELD_NAMES = tuple(tuple(_FIELDS[t]) for t in _TYPES)
_NONNEG_AT = tuple(tuple(i for i, name in enumerate(_FIELDS[t]) if name in _NONNEG) for t in _TYPES)
# per type code, every tuple of field classes that passes the field checks (bool only where declared)
_ACCEPTED = tuple(frozenset(itertools.product(*_FIELDS[t].values())) for t in _TYPES)
_REQUIRED = tuple(len(_BUFFERS.get(t, ())) - len(_OPTIONAL.get(t, ())) for t in _TYPES)  # the leading ones
_NP_BY_CODE = tuple(_NP_DTYPES[code] for code in _DTYPE_CODES)
_F64 = np.dtype(np.float64)
_add_reduce = np.add.reduce
_vdot = np.vdot
_F4 = _DTYPE_CODES.index("f4")


def _decode(frames: list[Any], max_bytes: int | None) -> Message:
    if not frames:
        raise ProtocolError("empty message")
    raws = [f.buffer if f.__class__ is zmq.Frame else _buffer_bytes(f) for f in frames]
    if max_bytes is not None:
        size = sum(len(r) for r in raws)
        if size > max_bytes:
            raise ProtocolError(f"message of {size} bytes exceeds the limit of {max_bytes}")
    head = raws[0]
    if len(head) > MAX_HEADER_BYTES:
        raise ProtocolError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    try:
        header = msgpack.unpackb(head, raw=False, strict_map_key=True, max_array_len=MAX_BUFFERS * 3,
                                 max_map_len=64, max_str_len=MAX_HEADER_BYTES, max_bin_len=0, max_ext_len=0)
    except Exception as err:  # msgpack raises many types for garbage
        raise ProtocolError(f"header is not valid msgpack ({type(err).__name__})") from None
    if isinstance(header, dict):
        header = _positional(header)
    elif not isinstance(header, list):
        raise ProtocolError("header is neither a list nor a map")
    return _decode_positional(header, raws[1:])


def _positional(head: dict) -> list:
    """The positional form of a map header, so that one validator judges both. Its buffers must come
    in the type's declared order under their declared names (``e0, e1, …`` for STATE)."""
    msg_type = head.get("type")
    if not isinstance(msg_type, str) or msg_type not in _FIELDS:
        raise ProtocolError(f"unknown message type {msg_type!r}")
    for name in _FIELDS[msg_type]:
        if name not in head:
            raise ProtocolError(f"{msg_type} lacks field {name!r}")
    specs = head.get("bufs", [])
    if not isinstance(specs, list) or len(specs) > MAX_BUFFERS:
        raise ProtocolError(f"{msg_type} buffer list is malformed")
    names = _buffer_names(msg_type, len(specs))
    bufs = []
    for i, spec in enumerate(specs):
        if not (isinstance(spec, list) and len(spec) == 3 and isinstance(spec[0], str)):
            raise ProtocolError(f"{msg_type} has a malformed buffer descriptor")
        name, dt, shape = spec
        if dt not in _DTYPES:
            raise ProtocolError(f"buffer {name!r} has unsupported dtype {dt!r}")
        if i < len(names) and name != names[i]:
            raise ProtocolError(f"{msg_type} buffer {i} is named {name!r}, expected {names[i]!r}")
        bufs.append([_DTYPE_CODES.index(dt), shape])
    return [_CODES[msg_type], *(head[name] for name in _FIELDS[msg_type]), bufs]


def _decode_positional(header: list, data: list[memoryview]) -> Message:
    """Validate a positional header and its buffer frames (one pass, tables built at import)."""
    code = header[0] if header else None
    if type(code) is not int or not 0 <= code < len(_TYPES):
        raise ProtocolError(f"unknown message type code {code!r}")
    msg_type, checks = _TYPES[code], _FIELD_CHECKS[code]
    if len(header) != len(checks) + 2:
        raise ProtocolError(f"{msg_type} header has {len(header)} items, expected {len(checks) + 2}")
    values = header[1:-1]
    if tuple(map(type, values)) not in _ACCEPTED[code]:  # msgpack yields exact built-in types: one lookup
        for (name, types, bool_ok, _), value in zip(checks, values):  # ... and here, which field is wrong
            # bool is an int subclass: keep them apart so resume=1 or agent=True are refused
            if not isinstance(value, types) or (value.__class__ is bool and not bool_ok):
                raise ProtocolError(f"{msg_type} field {name!r} has type {type(value).__name__}")
    fields: dict[str, Any] = dict(zip(_FIELD_NAMES[code], values))
    negative = None
    for i in _NONNEG_AT[code]:
        if values[i].__class__ is int and values[i] < 0:
            negative = checks[i][0]
            break
    bufs = header[-1]
    if not isinstance(bufs, list) or len(bufs) > MAX_BUFFERS:
        raise ProtocolError(f"{msg_type} buffer list is malformed")
    for b in bufs:
        if not (isinstance(b, list) and len(b) == 2 and b[0].__class__ is int and 0 <= b[0] < len(_DTYPE_CODES)
                and isinstance(b[1], list)):
            raise ProtocolError(f"{msg_type} has a malformed buffer descriptor")
    names = _BUFFER_NAMES[code]
    if names is None:
        names = _buffer_names(msg_type, len(bufs))
    elif len(bufs) > len(names):
        raise ProtocolError(f"{msg_type} declares {len(bufs)} buffers, expected {len(names)}")
    if len(bufs) != len(data):
        raise ProtocolError(f"{msg_type} declares {len(bufs)} buffers but carries {len(data)}")
    arrays = [_array(name, dcode, shape, raw) for name, (dcode, shape), raw in zip(names, bufs, data)]
    msg = Message(msg_type, fields)
    if code == _STATE:
        _check_state(msg, arrays)
    elif len(arrays) < _REQUIRED[code]:
        raise ProtocolError(f"{msg_type} lacks buffer {names[len(arrays)]!r}")
    else:
        msg.arrays = dict(zip(names, arrays))
    if negative is not None:
        raise ProtocolError(f"{msg_type} field {negative!r} is negative")
    return msg


def _array(name: str, dcode: int, shape: list, raw: memoryview) -> np.ndarray:
    """One buffer frame as a read-only array view of its bytes, once its size and values are checked."""
    if len(shape) > MAX_NDIM:
        raise ProtocolError(f"buffer {name!r} has an invalid shape {shape!r}")
    dtype = _NP_BY_CODE[dcode]
    expected = dtype.itemsize  # exact Python ints (np.prod costs ~8 µs a call)
    for s in shape:
        if s.__class__ is not int or not 0 <= s < 2**31:
            raise ProtocolError(f"buffer {name!r} has an invalid shape {shape!r}")
        expected *= s
    if len(raw) != expected:
        raise ProtocolError(f"buffer {name!r} has {len(raw)} bytes, its {_DTYPE_CODES[dcode]}{shape} needs {expected}")
    arr = np.frombuffer(raw, dtype).reshape(shape)
    # Finite iff the float64 sum is: float32/16 values cannot overflow it (|x| < 3.5e38, < 2^31
    # elements), and an inf or NaN makes it inf or NaN. For float32 a dot product x·x asks first at a
    # third of the cost: finite means every x is; inf or NaN may also be an overflow of huge finite
    # values, so then the sum decides.
    if dtype.kind == "f" and not (dcode == _F4 and math.isfinite(_vdot(arr, arr))) \
            and not math.isfinite(_add_reduce(arr, axis=None, dtype=_F64)):
        raise ProtocolError(f"buffer {name!r} contains NaN or inf")
    return arr


_STATE = _CODES["STATE"]


def _check_state(msg: Message, arrays: list[np.ndarray]) -> None:
    origins, hops = msg["origins"], msg["hops"]
    if len(origins) != len(hops) or len(origins) != len(arrays):
        raise ProtocolError("STATE origins, hops and buffers differ in length")
    if not all(x.__class__ is int and x >= 0 for x in origins + hops):
        raise ProtocolError("STATE origins and hops must be non-negative integers")
    for e in arrays:
        if e.ndim != 2:
            raise ProtocolError("STATE entry is not a 2-D array")
    msg.entries = arrays


def check_array(msg: Message, name: str, shape: tuple[int, ...], dtype: type) -> np.ndarray:
    """Semantic check by a receiver who knows what shape and dtype it expects."""
    arr = msg.arrays.get(name)
    if arr is None:
        raise ProtocolError(f"{msg.type} lacks buffer {name!r}")
    if arr.dtype != np.dtype(dtype):
        raise ProtocolError(f"{msg.type} buffer {name!r} has dtype {arr.dtype}, expected {np.dtype(dtype)}")
    if arr.shape != shape:
        raise ProtocolError(f"{msg.type} buffer {name!r} has shape {arr.shape}, expected {shape}")
    return arr
