"""Fast paths of the collection writer agree with the general code: ip protection, request records."""

from __future__ import annotations

import json
import os

from custlens.privacy.transforms import decrypt, protect_values
from custlens.server.collect import request_record, tag_of
from custlens.server.writer import IpProtector, expand, normalize, payload_hash


def test_collect_ip_fast_path_matches_protect_values():
    key = os.urandom(32)
    values = ["203.0.113.7", "10.0.0.1", "255.255.255.255", "0.0.0.0", "1.2.3.4", "010.1.2.3", " 1.2.3.4",
              "1.2.3.256", "2001:db8::1", "not an ip", "", None, "203.0.113.7", 12345, "１.２.３.４"]
    protect = IpProtector(key)
    for _ in range(2):  # the second round is served from the cache
        disp, pseudo, enc = protect(values)
        want_d, want_p, want_e = protect_values([None if v is None else str(v) for v in values], "ip", key)
        assert disp == want_d
        assert pseudo == want_p
        for v, e, w in zip(values, enc, want_e, strict=True):
            assert (e is None) == (w is None)
            if e is not None:
                assert decrypt(e, key) == str(v)


def test_collect_request_record_round_trip():
    batch = {"context": {"ip": "10.1.1.1", "page": {"url": "u"}},
             "batch": [{"type": "track", "event": "a", "userId": 7, "messageId": "m0", "context": {"x": 1}},
                       {"type": "track", "userId": "u"},  # skipped (spooled as a bad record)
                       {"type": "page", "anonymousId": "a", "messageId": ""}]}
    for body in (json.dumps(batch).encode(), b"\xef\xbb\xbf" + json.dumps(batch).encode()):
        rec = request_record(body, batch, "batch", "web", 1.5, "127.0.0.1", 2, [1], {"2": "srv-x"})
        assert tag_of(rec) == ("web", 2)
        got = expand(json.loads(rec))
        assert [mid for mid, _ in got] == ["m0", "srv-x"]
        m0 = got[0][1]
        assert m0["userId"] == "7" and m0["context"] == {"ip": "10.1.1.1", "page": {"url": "u"}, "x": 1}
        assert "messageId" not in got[1][1] and got[1][1]["type"] == "page"
        assert payload_hash(m0) == payload_hash(normalize({**batch["batch"][0], "context": m0["context"],
                                                           "sentAt": "2024-01-01T00:00:00Z"}, "track"))
    single = {"userId": "u1", "event": "view"}
    rec = request_record(json.dumps(single).encode(), single, "track", "web", 1.5, None, 1, [], {"0": "srv-1"})
    assert expand(json.loads(rec)) == [("srv-1", {"userId": "u1", "event": "view", "type": "track"})]


def test_collect_ip_tokens_are_cached_per_key_not_shared_across_keys():
    """An address keeps its token across batches while cached (no re-encryption per batch); a protector for
    another workspace key never hands out the first key's tokens, and each token decrypts under its own key."""
    k1, k2 = os.urandom(32), os.urandom(32)
    p1, p2 = IpProtector(k1), IpProtector(k2)
    first = p1(["198.51.100.9", "198.51.100.10"])[2]
    again = p1(["198.51.100.10", None, "198.51.100.9"])[2]
    assert again == [first[1], None, first[0]]
    assert first[0] != first[1]  # distinct addresses, distinct nonces and tokens
    other = p2(["198.51.100.9"])[2][0]
    assert other != first[0] and decrypt(other, k2) == "198.51.100.9" == decrypt(first[0], k1)
