"""Compare two runs of requests' test suite (junit XML): requests' own
HTTPAdapter (urllib3) and httpcore.RequestsAdapter.

Fails unless every test that passed on urllib3 passed on the adapter or is on
the adapter's skip list (skips.py). Prints the counts of both runs.

    python compare.py urllib3.xml adapter.xml
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from skips import ADAPTER_SKIPS


def outcomes(path: str) -> dict[str, str]:
    """node id -> passed / failed / skipped / xfailed (junit xunit2)."""
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        classname = case.get("classname", "")
        parts = classname.split(".")
        # tests.test_requests.TestRequests -> tests/test_requests.py::TestRequests
        module = [p for p in parts if p.startswith("test_") or p == "tests"]
        path_part = "/".join(module) + ".py"
        classes = parts[len(module) :]
        node = "::".join([path_part, *classes, case.get("name", "")])
        state = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                state = "failed"
            elif child.tag == "skipped":
                kind = child.get("type", "")
                state = "xfailed" if "xfail" in kind else "skipped"
        out[node] = state
    return out


def skipped_by_list(node: str) -> bool:
    return node in ADAPTER_SKIPS or node.split("[", 1)[0] in ADAPTER_SKIPS


def main() -> int:
    baseline, adapter = outcomes(sys.argv[1]), outcomes(sys.argv[2])
    for name, run in (("urllib3", baseline), ("adapter", adapter)):
        counts = Counter(run.values())
        print(f"{name}: " + ", ".join(f"{counts[k]} {k}" for k in sorted(counts)))
    listed = sorted(n for n, s in baseline.items() if s == "passed" and skipped_by_list(n))
    missing = sorted(
        n
        for n, s in baseline.items()
        if s == "passed" and adapter.get(n) != "passed" and not skipped_by_list(n)
    )
    print(f"passed on urllib3, skipped on the adapter by skips.py: {len(listed)}")
    if missing:
        print("passed on urllib3 but not on the adapter:")
        for node in missing:
            print(f"  {node}: {adapter.get(node, 'not run')}")
        return 1
    print("every test that passed on urllib3 passed on the adapter (or is on the skip list)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
