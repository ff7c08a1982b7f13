"""Parses every FHIR resource (JSON) in the folders given with the `fhir.resources` models
(R4B, the R4-compatible release of the package); exit 1 on any error or when nothing was checked."""
import importlib
import json
import pathlib
import sys

checked = 0
failed = 0


def check(resource, where):
    global checked, failed
    checked += 1
    kind = resource["resourceType"]
    module = importlib.import_module(f"fhir.resources.R4B.{kind.lower()}")
    try:
        getattr(module, kind).model_validate(resource)
    except Exception as error:  # the models raise pydantic's ValidationError
        failed += 1
        print(f"✗ {where} ({kind}): {error}", file=sys.stderr)


for root in sys.argv[1:]:
    for path in sorted(pathlib.Path(root).rglob("*.json")):
        check(json.loads(path.read_text()), str(path))

print(f"fhir.resources: {checked} resource(s) checked, {failed} with errors")
sys.exit(1 if checked == 0 or failed else 0)
