"""The exchange's pieces on their own: config, checkpoint, records and conversion."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from hashfed.protocol.checkpoint import Checkpoint
from hashfed.protocol.merkle import leaf_hash
from hashfed.protocol.records import (
    HashContent,
    Kind,
    Reason,
    Retraction,
    content_commitment,
    encode_addition,
)
from hashfed.protocol.records import encode_record as encode
from hashfed.protocol.validation import Policy
from hashfed.signing.keys import generate_key
from hashfed.sync.errors import PeerFault
from hashfed.sync.follow import CompactRange, VerifiedBundle
from hashfed.sync.pytx import TX_MANIFEST, HashfedSignalExchangeAPI
from hashfed.sync.pytx.api import HashfedConfigError
from hashfed.sync.pytx.config import (
    HashfedCheckpoint,
    HashfedCollabConfig,
    HashfedCredentials,
    HashfedNodeToken,
)
from hashfed.sync.pytx.entries import HashfedEntry, bundle_updates, convert
from threatexchange.exchanges.fetch_state import SignalOpinionCategory
from threatexchange.signal_type.md5 import VideoMD5Signal
from threatexchange.signal_type.pdq.signal import PdqSignal
from threatexchange.utils import dataclass_json

ORIGIN = "p.test/hashfed"
SALT = bytes(16)


def test_manifest_names_the_exchange() -> None:
    assert TX_MANIFEST.apis == (HashfedSignalExchangeAPI,)
    assert HashfedSignalExchangeAPI.get_name() == "hashfed"


@pytest.mark.parametrize("cls", [HashfedCollabConfig, HashfedCredentials, HashfedNodeToken])
def test_every_field_a_form_shows_has_help(cls: type) -> None:
    shown = [f for f in dataclasses.fields(cls) if f.init and f.name not in ("name", "enabled")]
    assert shown and all(f.metadata.get("help") for f in shown), [f.name for f in shown]
    assert all(not isinstance(f.type, str) for f in shown)  # pytx's CLI reads real types


def collab(**changes: object) -> HashfedCollabConfig:
    _, vkey = generate_key(ORIGIN)
    config = HashfedCollabConfig(urls=["http://127.0.0.1:1"], origin=ORIGIN, log_key=vkey, name="c")
    return dataclasses.replace(config, **changes)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"log_key": "nonsense"}, "log_key"),
        ({"log_key": generate_key("other.test/log")[1]}, "not after the origin"),
        ({"urls": []}, "no node URLs"),
        ({"urls": ["ftp://x"]}, r"not an http\(s\) URL"),
        ({"witness_policy": "/nonexistent/policy"}, "witness policy"),
    ],
)
def test_unusable_configs_are_refused(changes: dict[str, object], message: str) -> None:
    with pytest.raises(HashfedConfigError, match=message):
        HashfedSignalExchangeAPI(collab(**changes))


def test_a_bad_peer_key_is_refused() -> None:
    assert not HashfedCredentials("PRIVATE+KEY+nonsense")._are_valid()
    with pytest.raises(HashfedConfigError, match="peer key"):
        HashfedSignalExchangeAPI(collab(), HashfedCredentials("PRIVATE+KEY+nonsense"))
    skey, _ = generate_key("platform.test/x")
    assert HashfedCredentials(skey)._are_valid()
    assert skey not in repr(HashfedCredentials(skey))


def test_node_urls_carry_the_peer_key_the_node_must_prove() -> None:
    _, publisher_key = generate_key("peer:" + ORIGIN)
    _, mirror_key = generate_key("peer:mirror.test/node")
    api = HashfedSignalExchangeAPI(
        collab(
            urls=[
                f"{publisher_key}@http://127.0.0.1:1",
                f" {mirror_key}@https://mirror.test/base ",
                "https://cdn.test",
                "mirror.test/node=https://old.test",  # before peer keys: read anonymously
            ]
        )
    )
    assert [node.url for node in api.nodes] == [
        "http://127.0.0.1:1",
        "https://mirror.test/base",
        "https://cdn.test",
        "https://old.test",
    ]
    keys = [node.server_key and node.server_key.vkey() for node in api.nodes]
    assert keys == [publisher_key, mirror_key, None, None]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("nonsense@http://127.0.0.1:1", "peer key"),
        ("{log_key}@http://127.0.0.1:1", "is the log key"),
        ("{log_key}=http://127.0.0.1:1", "VKEY@URL"),
        ("{log_key} http://127.0.0.1:1", "VKEY@URL"),
    ],
)
def test_a_bad_node_peer_key_is_refused(url: str, message: str) -> None:
    config = collab()
    config = dataclasses.replace(config, urls=[url.format(log_key=config.log_key)])
    with pytest.raises(HashfedConfigError, match=message):
        HashfedSignalExchangeAPI(config)


def test_checkpoint_round_trips_json_and_pickle_and_detects_corruption() -> None:
    tree = CompactRange().extend([leaf_hash(bytes([i])) for i in range(5)])
    checkpoint = HashfedCheckpoint.of(tree, "note\n", 7, {3: b"\1" * 32})
    assert (
        dataclass_json.dataclass_load_dict(
            dataclass_json.dataclass_dump_dict(checkpoint), HashfedCheckpoint
        )
        == checkpoint
    )
    assert pickle.loads(pickle.dumps(checkpoint)) == checkpoint
    assert checkpoint.tree() == tree and checkpoint.missing_content() == {3: b"\1" * 32}
    assert checkpoint.get_progress_timestamp() == 7
    assert HashfedCheckpoint().get_progress_timestamp() is None
    with pytest.raises(ValueError, match="corrupt"):
        dataclasses.replace(checkpoint, root="00" * 32).tree()
    with pytest.raises(ValueError, match="corrupt"):
        dataclasses.replace(checkpoint, compact_range=checkpoint.compact_range[:1]).tree()


def content(digest: bytes, kind: Kind = Kind.PDQ, labels: tuple[str, ...] = ("ncii",)) -> bytes:
    quality = 100 if kind is Kind.PDQ else None
    return HashContent(kind, digest, quality, labels, 1000, SALT).encode()


def bundle(start: int, items: list[tuple[bytes, bytes]]) -> VerifiedBundle:
    entries = [entry for entry, _ in items]
    tree = CompactRange().extend([leaf_hash(e) for e in entries])
    cp = Checkpoint(ORIGIN, tree.size, tree.root())
    return VerifiedBundle(start, entries, [c for _, c in items], tree, cp, "")


def addition(item: bytes) -> tuple[bytes, bytes]:
    return encode_addition(content_commitment(item)), item


PDQ = bytes.fromhex("f8f8f0cee0f4a84f06370a22038f63f0b36e2ed596621e1d33e6b39c4e9c9b22")
MD5 = bytes.fromhex("0a21c8f85a55a9e276ffc2c53f6887c4")


def test_bundle_updates_key_records_by_index_and_delete_what_is_retracted() -> None:
    retract = encode(Retraction(2000, Reason.WITHDRAWN, (0,)))
    items = [
        addition(content(PDQ)),
        addition(content(MD5, Kind.MD5, ("ncii", "test"))),
        addition(content(PDQ)),
        (retract, b""),
        addition(content(b"\0" * 32)),  # committed but invalid: skipped
    ]
    updates, newest, missing = bundle_updates(bundle(100, items), Policy())
    assert updates[101] == HashfedEntry(101, "md5", MD5.hex(), ["ncii", "test"], 1000)
    assert updates[100] is not None and updates[102] is not None
    assert updates[0] is None  # the retraction names entry 0 (an earlier bundle)
    assert 104 not in updates and newest == 2000 and missing == {}


def test_content_that_does_not_match_its_commitment_is_the_peers_fault() -> None:
    entry, _ = addition(content(PDQ))
    with pytest.raises(PeerFault, match="does not match its commitment"):
        bundle_updates(bundle(0, [(entry, content(MD5, Kind.MD5))]), Policy())


def test_a_retraction_naming_a_later_entry_is_skipped() -> None:
    retract = encode(Retraction(2000, Reason.WITHDRAWN, (1,)))
    updates, _, _ = bundle_updates(bundle(0, [(retract, b""), addition(content(PDQ))]), Policy())
    assert updates == {1: updates[1]} and updates[1] is not None


def test_convert_merges_one_hash_under_two_entries_and_maps_labels() -> None:
    fetched = {
        3: HashfedEntry(3, "pdq", PDQ.hex(), ["ncii"], 1, 100),
        9: HashfedEntry(9, "pdq", PDQ.hex(), ["sextortion"], 1, 100),
        11: HashfedEntry(11, "md5", MD5.hex(), ["test"], 1),
    }
    converted = convert([PdqSignal, VideoMD5Signal], fetched)
    metadata = converted[PdqSignal][PDQ.hex()]
    assert metadata.entries == {3: {"ncii"}, 9: {"sextortion"}}
    assert [o.category for o in metadata.get_as_opinions()] == [
        SignalOpinionCategory.POSITIVE_CLASS
    ] * 2
    (test_opinion,) = converted[VideoMD5Signal][MD5.hex()].get_as_opinions()
    assert test_opinion.category is SignalOpinionCategory.NEGATIVE_CLASS
    assert convert([PdqSignal], fetched).keys() == {PdqSignal}


def test_report_opinion_says_it_needs_a_node() -> None:
    api = HashfedSignalExchangeAPI(collab())
    with pytest.raises(NotImplementedError, match="no feedback_node configured"):
        api.report_opinion(PdqSignal, PDQ.hex(), None)  # type: ignore[arg-type]
