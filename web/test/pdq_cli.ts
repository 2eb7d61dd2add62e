// pdq_cli reads images from stdin, each a little-endian uint32 width, uint32 height and
// width*height*3 RGB bytes, and prints "hash,quality" for each: the harness with which
// tests/test_web_pdq.py holds the port against pdqhash.
import { pdqFromRgb } from "../src/pdq.js";

const chunks: Buffer[] = [];
process.stdin.on("data", (c: Buffer) => chunks.push(c));
process.stdin.on("end", () => {
  const data = Buffer.concat(chunks);
  const out: string[] = [];
  let offset = 0;
  while (offset < data.length) {
    const width = data.readUInt32LE(offset);
    const height = data.readUInt32LE(offset + 4);
    offset += 8;
    const size = width * height * 3;
    const pixels = new Uint8Array(data.buffer, data.byteOffset + offset, size);
    offset += size;
    const r = pdqFromRgb(pixels, width, height, 3);
    out.push(`${r.hash},${r.quality}`);
  }
  process.stdout.write(out.join("\n") + "\n");
});
