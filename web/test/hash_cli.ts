// hash_cli prints, for each file named on the command line, one JSON line with the
// hashes the page computes for it (or the reason it refuses it): the harness with which
// tests/test_web_decode.py holds the page's decoding against `hashfed hash`.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { decode as decodePng, init as initPng } from "@jsquash/png/decode.js";
import decodeJpeg, { init as initJpeg } from "@jsquash/jpeg/decode.js";
import { md5 } from "hash-wasm";
import { CorruptPhoto, NeedsCommandLine, type Codecs } from "../src/decode.js";
import { Refused, recognise } from "../src/formats.js";
import { hashPhoto } from "../src/hashing.js";
import { fileSourceOf } from "../src/isobmff.js";

const require = createRequire(import.meta.url);

async function codecs(): Promise<Codecs> {
  const jpegWasm = readFileSync(require.resolve("@jsquash/jpeg/codec/dec/mozjpeg_dec.wasm"));
  const pngWasm = readFileSync(require.resolve("@jsquash/png/codec/pkg/squoosh_png_bg.wasm"));
  await initJpeg(await WebAssembly.compile(jpegWasm));
  await initPng(await WebAssembly.compile(pngWasm));
  return {
    jpeg: (data) => decodeJpeg(data, { preserveOrientation: false }),
    png8: (data) => decodePng(data),
    png16: (data) => decodePng(data, { bitDepth: 16 }),
  };
}

const c = await codecs();
for (const path of process.argv.slice(2)) {
  const bytes = new Uint8Array(readFileSync(path));
  let format = "";
  try {
    // Through a Blob, as the worker reads a File: slice by slice.
    const found = await recognise(fileSourceOf(new Blob([bytes])), path);
    format = found.name;
    if (found.kind !== "pdq") {
      const hash = await md5(bytes);
      console.log(JSON.stringify({ path, format, kind: "md5", hash }));
      continue;
    }
    const hashes = await hashPhoto(bytes, format, c);
    console.log(JSON.stringify({ path, format, hashes }));
  } catch (e) {
    const reason =
      e instanceof Refused ? `refused:${e.code}`
      : e instanceof NeedsCommandLine ? "needs-cli"
      : e instanceof CorruptPhoto ? `corrupt:${e.detail}`
      : `error:${String(e)}`;
    console.log(JSON.stringify({ path, format, reason }));
  }
}
