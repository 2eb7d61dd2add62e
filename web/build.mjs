// Builds the person's page into the node's package data (node/http/casepage_static/), so the
// wheel ships it and `pip install .` serves it without Node, and builds the Node
// harnesses the tests use into web/build/. Output is deterministic for a given lockfile.
import { build } from "esbuild";
import { chmodSync, copyFileSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);
const out = process.argv[2] ?? join(here, "..", "node", "http", "casepage_static");
const harnesses = join(here, "build");

const common = { bundle: true, minify: true, legalComments: "eof", target: "es2022", logLevel: "warning" };

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
await build({ ...common, entryPoints: [join(here, "src", "app.ts")], outfile: join(out, "app.js"), format: "iife" });
await build({ ...common, entryPoints: [join(here, "src", "worker.ts")], outfile: join(out, "worker.js"), format: "esm" });
for (const name of readdirSync(join(here, "static"))) copyFileSync(join(here, "static", name), join(out, name));
const wasm = [
  require.resolve("@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm"),
  require.resolve("@jsquash/png/codec/pkg/squoosh_png_bg.wasm"),
];
for (const file of wasm) copyFileSync(file, join(out, file.split("/").pop()));
// The licences of the third-party code the page ships (shipped in the wheel, not served).
const licences = [
  ["@jsquash/jpeg", "LICENSE"],
  ["@jsquash/jpeg", "codec/LICENSE.codec.md"],
  ["@jsquash/png", "LICENSE"],
  ["@jsquash/png", "codec/LICENSE.codec.md"],
  ["hash-wasm", "LICENSE"],
];
writeFileSync(
  join(out, "THIRD-PARTY-LICENSES.txt"),
  licences
    .map(([pkg, file]) => `==== ${pkg}/${file}\n\n${readFileSync(join(here, "node_modules", pkg, file), "utf8")}\n`)
    .join("\n"),
);
for (const name of readdirSync(out)) chmodSync(join(out, name), 0o644);

// With an output folder given (the freshness test), build the page only.
const names = process.argv[2] === undefined ? ["pdq_cli", "hash_cli"] : [];
mkdirSync(harnesses, { recursive: true });
for (const name of names) {
  await build({
    ...common,
    minify: false,
    entryPoints: [join(here, "test", `${name}.ts`)],
    outfile: join(harnesses, `${name}.mjs`),
    platform: "node",
    format: "esm",
  });
}
