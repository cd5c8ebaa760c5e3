"""Stop a real ``deploykit serve`` under load many times and count what its clients saw (a manual soak;
``tests/server/test_stop_under_load.py`` is the test CI runs once per data plane).

    .venv/bin/python tests/server/stop_soak.py --stops 20 --dataplane native --rest-clients 12

Each stop: a fresh server, 4 gRPC and ``--rest-clients`` REST closed-loop clients, SIGTERM after 300
answers. A clean stop shows only OK/200, UNAVAILABLE/503 and refused connections; the totals at the
end list anything else (a reset REST connection shows as ReadError).
"""

from __future__ import annotations

import argparse
import collections
import signal
import sys
import tempfile
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]

from lifecycle_helpers import build_slow, slow_inputs, start_serve  # noqa: E402
from shutdown_load import GONE, Load  # noqa: E402

from deploykit.client import Client  # noqa: E402
from deploykit.ports import free_ports  # noqa: E402

CLEAN = {"OK", "UNAVAILABLE", "200", "503", GONE}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stops", type=int, default=20)
    parser.add_argument("--dataplane", choices=["native", "python"], default="native")
    parser.add_argument("--rest-clients", type=int, default=12)
    parser.add_argument("--grpc-clients", type=int, default=4)
    args = parser.parse_args()
    repo = Path(tempfile.mkdtemp(prefix="stop-soak-"))
    build_slow(repo)
    unclean: collections.Counter = collections.Counter()
    for stop in range(args.stops):
        grpc_port, rest_port = free_ports(2)
        process = start_serve(
            str(repo), "--port", str(grpc_port), "--rest_api_port", str(rest_port), "--dataplane", args.dataplane
        )
        try:
            with Client(f"http://127.0.0.1:{rest_port}", timeout=60) as client:
                client.wait_until_ready("slow", timeout=60)
            load = Load(grpc_port, rest_port, "slow", slow_inputs(1), args.grpc_clients, args.rest_clients)
            load.wait_for_answers(300)
            process.send_signal(signal.SIGTERM)
            counts = load.finish(timeout=60)
            if process.wait(timeout=60) != 0:
                unclean[f"server exit {process.returncode}"] += 1
        finally:
            process.kill()
            process.wait()
        for kind, outcomes in counts.items():
            unclean.update({f"{kind} {outcome}": n for outcome, n in outcomes.items() if outcome not in CLEAN})
        print(f"stop {stop}: grpc {dict(counts['grpc'])} rest {dict(counts['rest'])}", flush=True)
        for detail in load.details[:5]:
            print(f"    {detail[:300]}", flush=True)
    print(f"{args.stops} stops; unclean answers or exits: {dict(unclean) or 'none'}")
    return 1 if unclean else 0


if __name__ == "__main__":
    sys.exit(main())
