"""Our pickle machine against Python's pickler: the same values for what the pickler writes (protocols 0-5),
and refusals, always as CheckpointError, for what it does not allow."""
import collections
import math
import pickle

import pytest

from sidkernels.checkpoint.errors import CheckpointError, UnsafePickleError
from sidkernels.checkpoint.pickle_machine import KEY_INT_LIMIT, Entry, Record, run_bytes
from sidkernels.checkpoint.safe_unpickler import TABLE, OrderedDictRecord
from tests.checkpoint import hostile as h

VALUES = [
    0, 1, -1, 255, 256, 65535, 65536, -(1 << 31), (1 << 31) - 1, 1 << 40, -(1 << 100), (1 << 255) - 1,
    0.0, -0.0, 1.5, 1e-300, float("inf"), -float("inf"), "", "abc", "ünïcödé \n\\ '\"", "x" * 300, None, True,
    False, (), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4), [], [1, [2, [3]]], {}, {"a": 1, 2: "b", None: [], b"k": 0},
    collections.OrderedDict(b=1, a=2), {1, "2", None}, {"nested": ({"t": (1.0, [None])},)},
]
#: values that older protocols write as calls of builtins the table does not hold (our formats never have them)
BY_PROTOCOL = {3: [b"", b"\x00\xff" * 200], 4: [frozenset({3, "4"})], 5: [bytearray(b"ab")]}


def same(a, b):
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if type(a) is not type(b) and not (type(b) is collections.OrderedDict and isinstance(a, OrderedDictRecord)):
        return False
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    return a == b


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_values_match_python_pickle(protocol):
    for value in VALUES + [v for p, values in BY_PROTOCOL.items() if protocol >= p for v in values]:
        data = pickle.dumps(value, protocol=protocol)
        assert same(run_bytes(data, TABLE), value), (protocol, value)
    assert math.isnan(run_bytes(pickle.dumps(float("nan"), protocol=protocol), TABLE))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_shared_and_recursive_structure_is_kept(protocol):
    shared = [1, 2]
    loop = []
    loop.append(loop)
    out = run_bytes(pickle.dumps({"a": shared, "b": shared, "loop": loop}, protocol=protocol), TABLE)
    assert out["a"] is out["b"] and out["a"] == [1, 2]
    assert out["loop"][0] is out["loop"]


def test_every_truncation_is_a_checkpoint_error():
    data = pickle.dumps({"a": [1, 2.5, "x" * 40, (None, True)], "b": {1, 2}, "c": b"\x00" * 10}, protocol=4)
    for n in range(len(data)):
        with pytest.raises(CheckpointError):
            run_bytes(data[:n], TABLE)


@pytest.mark.parametrize("data, match", [
    (h.MARK + h.inst("collections", "OrderedDict"), "refused opcode b'i'"),
    (h.NONE + b"o", "refused opcode b'o'"),
    (b"\x82\x01", "refused opcode"),
    (b"P1\n", "refused opcode b'P'"),
    (h.NONE + h.BINPERSID, "persistent ids are not allowed"),
    (h.call(h.glob("builtins", "object")), "REDUCE on builtins.object"),
    (h.glob("builtins", "set") + h.EMPTY_TUPLE + h.NEWOBJ, "NEWOBJ on builtins.set"),
    (h.EMPTY_LIST + h.dct() + h.BUILD, "BUILD on list"),
    (h.text("x") + h.integer(1) + h.APPEND, "APPEND on a 'x'"),
    (h.call(h.glob("builtins", "set"), h.lst()) + h.MARK + h.integer(1) + h.SETITEMS, "SETITEMS on a set"),
    (h.EMPTY_DICT + h.MARK + h.integer(1) + h.ADDITEMS, "ADDITEMS on a dict"),
    (h.EMPTY_DICT + h.number(1.0) + h.NONE + h.SETITEM, "a 1.0 as a dict key"),
    (h.EMPTY_DICT + h.integer(KEY_INT_LIMIT) + h.NONE + h.SETITEM, "as a dict key"),
    (h.EMPTY_DICT + h.EMPTY_TUPLE + h.NONE + h.SETITEM, "a tuple as a dict key"),
    (h.MARK + h.EMPTY_LIST + b"\x91", "a list as a dict key or set item"),
    (h.integer(1) + h.integer(2) + h.STACK_GLOBAL, "STACK_GLOBAL needs two strings"),
    (b"\x8a\x21" + bytes(33), "integer of 33 bytes"),
    (b"\x80\x06", "protocol 6 is not supported"),
    (b"\x97", "refused opcode"),
    (h.get(5), "memo entry 5 was never stored"),
    (h.POP, "no MARK to pop to"),
    (h.TUPLE2, "TUPLE2 needs 2 items"),
])
def test_refusals(data, match):
    with pytest.raises(CheckpointError, match=match):
        run_bytes(h.program(data), TABLE)


def test_names_are_inert_references_and_records_take_state():
    class Box(Record):
        def __init__(self):
            self.state = None

        def set_state(self, state):
            self.state = state

    table = {("m", "box"): Entry("new", Box), ("m", "f"): Entry("call", lambda *a: ("called", a)),
             ("m", "k"): Entry("constant", 7)}
    ref, box, called, k = run_bytes(h.program(h.tup(
        h.glob("m", "f"), h.glob("m", "box") + h.EMPTY_TUPLE + h.NEWOBJ + h.dct((h.text("s"), h.integer(1))) + h.BUILD,
        h.call(h.glob("m", "f"), h.integer(3)), h.glob("m", "k"))), table)
    assert repr(ref) == "<pickled reference to m.f>" and not callable(ref)
    assert isinstance(box, Box) and box.state == {"s": 1}
    assert called == ("called", (3,)) and k == 7
    first, second = run_bytes(h.program(h.tup(h.glob("m", "f"), h.glob("m", "f"))), table)
    assert first is not second  # a fresh reference per lookup, never a shared object


def test_refused_names_are_forbidden_global_errors():
    from sidkernels.checkpoint import ForbiddenGlobalError

    with pytest.raises(ForbiddenGlobalError, match="'os.system'") as err:
        run_bytes(h.program(h.glob("os", "system")), TABLE)
    assert isinstance(err.value, pickle.UnpicklingError) and isinstance(err.value, UnsafePickleError)


def test_memory_budget_counts_what_calls_create():
    """Creating a set of 2000 items 20000 times from one memoised list is refused; once is fine."""
    with pytest.raises(UnsafePickleError, match="more memory than it holds"):
        run_bytes(h.amplified_set(2000, 20_000), TABLE)
    assert len(run_bytes(h.amplified_set(2000, 1), TABLE)) == 1
