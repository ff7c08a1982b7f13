// After `vite build`: precompress the files (the gateway sends `x.br` / `x.gz` when accepted),
// check the first load's JavaScript budget, and stamp dist/ with the hash of the sources it was
// built from (`telehealth up` rebuilds when the stamp differs; src/cli/web.rs computes the same).
import { createHash } from "node:crypto";
import { readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { join, relative, sep } from "node:path";
import { brotliCompressSync, gzipSync, constants } from "node:zlib";

const root = new URL("..", import.meta.url).pathname;
const dist = join(root, "dist");
const BUDGET_BYTES = 250 * 1024;

function files(dir) {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? files(path) : [path];
  });
}

// 1. Precompressed copies of every text file.
for (const path of files(dist)) {
  if (!/\.(js|css|html|svg|json)$/.test(path)) continue;
  const data = readFileSync(path);
  writeFileSync(`${path}.gz`, gzipSync(data, { level: 9 }));
  writeFileSync(`${path}.br`, brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } }));
}

// 2. The first load: index.html's scripts and everything they import statically (Vite lists the
//    static imports as modulepreload links or in the entry; dynamic imports are other screens).
const html = readFileSync(join(dist, "index.html"), "utf8");
const first = [...html.matchAll(/(?:src|href)="\/(assets\/[^"]+\.js)"/g)].map((m) => m[1]);
const seen = new Set();
const queue = [...first];
while (queue.length) {
  const asset = queue.pop();
  if (seen.has(asset)) continue;
  seen.add(asset);
  const code = readFileSync(join(dist, asset), "utf8");
  for (const m of code.matchAll(/^import[^"']*["']\.\/([^"']+\.js)["']/gm)) queue.push(`assets/${m[1]}`);
}
let gzip = 0;
let brotli = 0;
for (const asset of seen) {
  gzip += statSync(join(dist, `${asset}.gz`)).size;
  brotli += statSync(join(dist, `${asset}.br`)).size;
}
console.log(
  `first load: ${seen.size} script(s), ${(gzip / 1024).toFixed(1)} KiB gzip, ${(brotli / 1024).toFixed(1)} KiB brotli (budget ${BUDGET_BYTES / 1024} KiB compressed)`,
);
if (gzip > BUDGET_BYTES) {
  console.error("the first load's JavaScript is over budget");
  process.exit(1);
}

// 3. The stamp.
writeFileSync(join(dist, ".source-hash"), `${sourceHash(root)}\n`);

export function sourceHash(base) {
  const inputs = ["index.html", "package.json", "package-lock.json", "tsconfig.json", "vite.config.ts", "buf.gen.yaml"]
    .map((name) => join(base, name))
    .concat(files(join(base, "src")), files(join(base, "scripts")))
    .map((path) => relative(base, path).split(sep).join("/"))
    .sort();
  const hash = createHash("sha256");
  for (const path of inputs) {
    hash.update(path);
    hash.update("\0");
    hash.update(readFileSync(join(base, path)));
    hash.update("\0");
  }
  return hash.digest("hex");
}
