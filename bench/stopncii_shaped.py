"""A local server shaped like the StopNCII FetchHashes API, for the sync peer baseline.

``python -m bench.stopncii_shaped DB PORT`` serves the hash additions of the
publisher database DB (the same records the hashfed sync benchmark syncs) at
``http://127.0.0.1:PORT/v1/FetchHashes``, in JSON pages of ``pageSize`` records
(800, as python-threatexchange's ``StopNCIIAPI.fetch_hashes`` asks), with the
shape that client parses (``threatexchange/exchanges/clients/stopncii/api.py``):

    {"count", "nextPageToken", "nextSetTimestamp", "hasMoreRecords",
     "hashRecords": [{"lastModtimestamp", "signalType", "hashValue",
                      "hashStatus", "caseNumbers", "CSPFeedbacks"}, ...]}

The page token is the bank index to continue from. Records are built and
serialised per request, as a real API server would.
"""

from __future__ import annotations

import json
import sqlite3
import sys

from aiohttp import web

SIGNAL_TYPES = {"pdq": "ImagePDQ", "md5": "VideoMD5"}


def create_app(db_path: str) -> web.Application:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    (log_id,) = conn.execute("SELECT id FROM logs WHERE own = 1").fetchone()

    async def fetch_hashes(request: web.Request) -> web.Response:
        size = min(int(request.query.get("pageSize", "800")), 1000)
        start = int(request.query.get("nextPageToken") or 0)
        rows = conn.execute(
            "SELECT idx, kind, hash, added FROM bank WHERE log_id = ? AND idx >= ?"
            " AND hash IS NOT NULL ORDER BY idx LIMIT ?",
            (log_id, start, size + 1),
        ).fetchall()
        more = len(rows) > size
        page = rows[:size]
        records = [
            {
                "lastModtimestamp": added,
                "signalType": SIGNAL_TYPES[kind],
                "hashValue": bytes(digest).hex(),
                "hashStatus": "Active",
                "caseNumbers": {f"case-{idx}": "Active"},
                "CSPFeedbacks": [],
            }
            for idx, kind, digest, added in page
        ]
        body = {
            "count": len(records),
            "nextPageToken": str(rows[size][0]) if more else None,
            "nextSetTimestamp": page[-1][3] if page else 0,
            "hasMoreRecords": more,
            "hashRecords": records,
        }
        return web.Response(text=json.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/v1/FetchHashes", fetch_hashes)
    return app


def main() -> None:
    db_path, port = sys.argv[1], int(sys.argv[2])
    web.run_app(create_app(db_path), host="127.0.0.1", port=port, print=None, access_log=None)


if __name__ == "__main__":
    main()
