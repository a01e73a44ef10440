"""A catalog change as `hbus catalog apply` would publish it: the shipped schemas, plus a new event type in an
existing department (市场监管 inspection notices, public) and a new version of an existing type (licence_granted v2,
with an optional public field). Shared by the unit and the integration tests of following the catalog."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from hybridbus.runtime.catalogstore import CatalogSnapshot

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "schemas" / "avro"

NEW_TYPE = "market.inspection_notice"
NEW_VERSION = ("market.licence_granted", 2)

_INSPECTION = {
    "type": "record", "namespace": "hybridbus.market", "name": "InspectionNotice",
    "doc": "A market inspection was announced (监督检查公告). Open data.",
    "hbus.dept": "market", "hbus.event": "inspection_notice", "hbus.version": 1, "grade": "public",
    "fields": [
        {"name": "notice_id", "type": "string", "grade": "public", "doc": "Notice number."},
        {"name": "credit_code", "type": "string", "grade": "public", "doc": "Inspected company's credit code."},
        {"name": "district", "type": "string", "grade": "public", "doc": "District."},
        {"name": "announced_on", "type": "string", "grade": "public", "doc": "Date announced, ISO 8601."},
    ],
}


def _licence_v2() -> dict:  # type: ignore[type-arg]
    schema = json.loads((SCHEMAS / "market" / "licence_granted.v1.avsc").read_text(encoding="utf-8"))
    schema["hbus.version"] = 2
    schema["fields"].append({"name": "registered_capital_band", "type": ["null", "string"], "default": None,
                             "grade": "public", "doc": "Registered capital band (注册资本区间)."})
    return schema


NEW_FILES = {
    "market/inspection_notice.v1.avsc": json.dumps(_INSPECTION, ensure_ascii=False, indent=2),
    "market/licence_granted.v2.avsc": json.dumps(_licence_v2(), ensure_ascii=False, indent=2),
}


def changed_snapshot(applied_by: str = "test") -> CatalogSnapshot:
    """The shipped catalog with the new type and the new version."""
    return CatalogSnapshot({**CatalogSnapshot.from_dir(SCHEMAS).files, **NEW_FILES}, applied_by)


def write_changed_schemas(target: Path) -> Path:
    """The changed catalog as files (`target/avro/<dept>/…`, `target/departments.yaml`); returns the schemas dir."""
    shutil.copytree(SCHEMAS, target / "avro")
    shutil.copy(SCHEMAS.parent / "departments.yaml", target / "departments.yaml")
    for path, text in NEW_FILES.items():
        (target / "avro" / path).write_text(text, encoding="utf-8")
    return target / "avro"
