/**
 * Decode a JPEG or PNG photo into the same 8-bit RGB pixels as the node's hasher
 * (Pillow, hasher/decode.py), so that the page's PDQ hash equals `hashfed hash`.
 *
 * Decoders are WebAssembly builds (MozJPEG through @jsquash/jpeg, the Rust png crate
 * through @jsquash/png), never `<canvas>`, which applies colour management and alpha
 * premultiplication. The hasher's conversion rules are ported here:
 * - greyscale is replicated to R, G and B; a palette is looked up;
 * - transparency is composited onto white with Pillow's integer alpha_composite;
 * - 16-bit greyscale is scaled to 0..255 (rounded half to even), 16-bit colour keeps
 *   the high byte, as Pillow's PNG reader does.
 * Inputs whose pixels Pillow computes differently (CMYK, 12-bit or lossless JPEG,
 * transparency keyed on a sub-8-bit or 16-bit colour) raise NeedsCommandLine: the page
 * then points to `hashfed hash` rather than publish a near-miss hash.
 *
 * The orientation (2..8) is read as Pillow's getexif reads it: the EXIF tag 0x0112 (a
 * JPEG's first Exif APP1, a PNG's eXIf chunk), else XMP's tiff:Orientation (a JPEG's
 * XMP APP1, a PNG's XML:com.adobe.xmp text);
 * the stored pixels are always hashed, and the oriented pixels too, as the hasher does.
 */

/** Pixels: height rows of width RGB triples. */
export interface Rgb {
  width: number;
  height: number;
  data: Uint8Array;
}

/** A decoded photo: its stored pixels and, when set, the EXIF orientation (2..8). */
export interface DecodedPhoto {
  stored: Rgb;
  orientation: number | null;
}

/** The most pixels (width x height) a photo may declare, as in hasher/decode.py. */
export const MAX_PIXELS = 200_000_000;

/** The page cannot decode this file to Pillow's pixels: hash it with `hashfed hash`. */
export class NeedsCommandLine extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = "NeedsCommandLine";
  }
}

/** The file is damaged or lies about its size. */
export class CorruptPhoto extends Error {
  constructor(readonly detail: string) {
    super(detail);
    this.name = "CorruptPhoto";
  }
}

/** The decoders the page uses; the worker and the Node tests build them differently. */
export interface Codecs {
  jpeg(data: ArrayBuffer): Promise<{ width: number; height: number; data: Uint8ClampedArray }>;
  png8(data: ArrayBuffer): Promise<{ width: number; height: number; data: Uint8ClampedArray }>;
  png16(data: ArrayBuffer): Promise<{ width: number; height: number; data: Uint16Array }>;
}

function checkPixels(width: number, height: number): void {
  if (width <= 0 || height <= 0) throw new CorruptPhoto(`empty size ${width}x${height}`);
  if (width * height > MAX_PIXELS) {
    throw new CorruptPhoto(`${width}x${height} is over the ${MAX_PIXELS / 1e6}-megapixel limit`);
  }
}

// ---------------------------------------------------------------- EXIF

/** exifOrientationTag returns the raw orientation tag of a TIFF-structured EXIF block. */
export function exifOrientationTag(tiff: Uint8Array): number | null {
  if (tiff.length < 8) return null;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const order = String.fromCharCode(tiff[0], tiff[1]);
  if (order !== "II" && order !== "MM") return null;
  const little = order === "II";
  if (view.getUint16(2, little) !== 42) return null;
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return null;
  const count = view.getUint16(ifd, little);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return null;
    if (view.getUint16(entry, little) !== 0x0112) continue;
    const type = view.getUint16(entry + 2, little);
    if (type === 3) return view.getUint16(entry + 8, little);
    if (type === 4) return view.getUint32(entry + 8, little);
    return null;
  }
  return null;
}

/** xmpOrientation returns the tiff:Orientation digit of an XMP packet, as Pillow reads it. */
export function xmpOrientation(xmp: Uint8Array): number | null {
  let text = "";
  for (let i = 0; i < xmp.length; i += 8192) {
    text += String.fromCharCode(...xmp.subarray(i, i + 8192));
  }
  const match = /tiff:Orientation(="|>)([0-9])/.exec(text);
  return match === null ? null : Number(match[2]);
}

/**
 * viewerOrientation returns the orientation a viewer applies (2..8) or null, as the
 * hasher reads it through Pillow: the EXIF tag when EXIF has one, else XMP's.
 */
function viewerOrientation(exifTag: number | null, xmp: Uint8Array | null): number | null {
  const raw = exifTag ?? (xmp === null ? null : xmpOrientation(xmp));
  return raw !== null && raw >= 2 && raw <= 8 ? raw : null;
}

/** exifOrientation returns the orientation of a TIFF-structured EXIF block, if 2..8. */
export function exifOrientation(tiff: Uint8Array): number | null {
  return viewerOrientation(exifOrientationTag(tiff), null);
}

/** orient returns the pixels as a viewer shows them for an EXIF orientation 2..8. */
export function orient(src: Rgb, orientation: number): Rgb {
  const { width: w, height: h, data } = src;
  const swap = orientation >= 5;
  const ow = swap ? h : w;
  const oh = swap ? w : h;
  const out = new Uint8Array(ow * oh * 3);
  for (let y = 0; y < oh; y++) {
    for (let x = 0; x < ow; x++) {
      let sx: number;
      let sy: number;
      switch (orientation) {
        case 2: [sx, sy] = [w - 1 - x, y]; break; // mirror horizontally
        case 3: [sx, sy] = [w - 1 - x, h - 1 - y]; break; // rotate 180
        case 4: [sx, sy] = [x, h - 1 - y]; break; // mirror vertically
        case 5: [sx, sy] = [y, x]; break; // transpose
        case 6: [sx, sy] = [y, h - 1 - x]; break; // rotate 90 clockwise
        case 7: [sx, sy] = [w - 1 - y, h - 1 - x]; break; // transverse
        case 8: [sx, sy] = [w - 1 - y, x]; break; // rotate 90 counter-clockwise
        default: throw new Error(`orientation ${orientation} is not 2..8`);
      }
      const s = (sy * w + sx) * 3;
      const o = (y * ow + x) * 3;
      out[o] = data[s];
      out[o + 1] = data[s + 1];
      out[o + 2] = data[s + 2];
    }
  }
  return { width: ow, height: oh, data: out };
}

// ---------------------------------------------------------------- JPEG

const XMP_JPEG = "http://ns.adobe.com/xap/1.0/\0";
const XMP_KEYWORD = "XML:com.adobe.xmp";
const RAW_EXIF_KEYWORD = "Raw profile type exif";

interface JpegInfo {
  precision: number;
  components: number;
  process: number;
  width: number;
  height: number;
  orientation: number | null;
}

/** jpegInfo reads the frame header and EXIF orientation from a JPEG's markers. */
export function jpegInfo(bytes: Uint8Array): JpegInfo {
  let offset = 2;
  let exif: Uint8Array | null = null; // the first Exif APP1, as Pillow keeps
  let xmp: Uint8Array | null = null; // the last XMP APP1, as Pillow keeps
  let frame: Omit<JpegInfo, "orientation"> | null = null;
  while (offset + 4 <= bytes.length) {
    if (bytes[offset] !== 0xff) throw new CorruptPhoto("JPEG marker expected");
    const marker = bytes[offset + 1];
    if (marker === 0xff) {
      offset++;
      continue;
    }
    const length = (bytes[offset + 2] << 8) | bytes[offset + 3];
    const body = bytes.subarray(offset + 4, offset + 2 + length);
    if (marker === 0xe1 && body.length > 6) {
      if (exif === null && String.fromCharCode(...body.subarray(0, 6)) === "Exif\0\0") {
        exif = body.subarray(6);
      } else if (String.fromCharCode(...body.subarray(0, 29)) === XMP_JPEG) {
        xmp = body.subarray(29);
      }
    }
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame) {
      if (body.length < 6) throw new CorruptPhoto("JPEG frame header is truncated");
      frame = {
        process: marker,
        precision: body[0],
        height: (body[1] << 8) | body[2],
        width: (body[3] << 8) | body[4],
        components: body[5],
      };
    }
    if (marker === 0xda) break; // metadata comes before the scan: Pillow reads up to here
    offset += 2 + length;
  }
  if (frame !== null) {
    return { ...frame, orientation: viewerOrientation(exif === null ? null : exifOrientationTag(exif), xmp) };
  }
  throw new CorruptPhoto("no JPEG frame header found (truncated?)");
}

async function decodeJpeg(bytes: Uint8Array, codecs: Codecs): Promise<DecodedPhoto> {
  const info = jpegInfo(bytes);
  if (info.precision !== 8) throw new NeedsCommandLine(`${info.precision}-bit JPEG`);
  if (![0xc0, 0xc1, 0xc2].includes(info.process)) {
    throw new NeedsCommandLine("lossless, hierarchical or arithmetic-coded JPEG");
  }
  if (info.components !== 1 && info.components !== 3) {
    throw new NeedsCommandLine("CMYK JPEG");
  }
  checkPixels(info.width, info.height);
  const image = await codecs.jpeg(copyBuffer(bytes));
  if (image.width !== info.width || image.height !== info.height) {
    throw new CorruptPhoto("JPEG decoded to an unexpected size");
  }
  return { stored: dropAlpha(image), orientation: info.orientation };
}

// ---------------------------------------------------------------- PNG

interface PngInfo {
  width: number;
  height: number;
  bitDepth: number;
  colorType: number;
  transparency: boolean;
  orientation: number | null;
}

/** pngInfo reads a PNG's header, whether it has a tRNS chunk, and its EXIF orientation. */
export function pngInfo(bytes: Uint8Array): PngInfo {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let offset = 8;
  let header: Omit<PngInfo, "transparency" | "orientation"> | null = null;
  let transparency = false;
  let exif: Uint8Array | null = null;
  let xmp: Uint8Array | null = null;
  while (offset + 8 <= bytes.length) {
    const length = view.getUint32(offset);
    const type = String.fromCharCode(...bytes.subarray(offset + 4, offset + 8));
    const body = bytes.subarray(offset + 8, offset + 8 + length);
    if (type === "IHDR" && body.length >= 13) {
      header = {
        width: view.getUint32(offset + 8),
        height: view.getUint32(offset + 12),
        bitDepth: body[8],
        colorType: body[9],
      };
    } else if (type === "tRNS") {
      transparency = true;
    } else if (type === "eXIf") {
      exif = body;
    } else if (type === "tEXt" || type === "iTXt" || type === "zTXt") {
      xmp = pngTextXmp(type, body) ?? xmp;
    } else if (type === "IEND") {
      break;
    }
    offset += 12 + length;
  }
  if (header === null) throw new CorruptPhoto("PNG header (IHDR) missing");
  const orientation = viewerOrientation(exif === null ? null : exifOrientationTag(exif), xmp);
  return { ...header, transparency, orientation };
}

/**
 * pngTextXmp returns the XMP packet of a PNG text chunk, or null for other keywords.
 * Metadata the page cannot read as Pillow does (compressed XMP, EXIF kept as a "Raw
 * profile" text) may carry an orientation: it raises NeedsCommandLine.
 */
function pngTextXmp(type: string, body: Uint8Array): Uint8Array | null {
  const nul = body.indexOf(0);
  if (nul < 0) return null;
  const keyword = String.fromCharCode(...body.subarray(0, nul));
  if (keyword === RAW_EXIF_KEYWORD) throw new NeedsCommandLine("PNG with a raw EXIF profile");
  if (keyword !== XMP_KEYWORD) return null;
  if (type === "tEXt") return body.subarray(nul + 1);
  if (type === "iTXt" && body[nul + 1] === 0) {
    // keyword\0 compression-flag method language\0 translated-keyword\0 text
    let at = nul + 3;
    for (let field = 0; field < 2; field++) {
      const end = body.indexOf(0, at);
      if (end < 0) return null;
      at = end + 1;
    }
    return body.subarray(at);
  }
  throw new NeedsCommandLine("PNG with compressed XMP metadata");
}

function needsCommandLinePng(info: PngInfo): string | null {
  const { bitDepth, colorType, transparency } = info;
  if (transparency && colorType === 0 && bitDepth !== 8 && bitDepth !== 16) {
    return "transparent greyscale PNG under 8 bits";
  }
  if (transparency && colorType === 2 && bitDepth === 16) return "transparent 16-bit RGB PNG";
  return null;
}

async function decodePng(bytes: Uint8Array, codecs: Codecs): Promise<DecodedPhoto> {
  const info = pngInfo(bytes);
  checkPixels(info.width, info.height);
  const reason = needsCommandLinePng(info);
  if (reason !== null) throw new NeedsCommandLine(reason);
  let stored: Rgb;
  if (info.colorType === 0 && info.bitDepth === 16) {
    // Pillow reads 16-bit greyscale as mode I;16 and the hasher scales it (tRNS ignored).
    stored = scaleGrey16(await codecs.png16(copyBuffer(bytes)));
  } else {
    const image = await codecs.png8(copyBuffer(bytes));
    const hasAlpha = info.transparency || info.colorType === 4 || info.colorType === 6;
    stored = hasAlpha ? compositeOnWhite(image) : dropAlpha(image);
  }
  if (stored.width !== info.width || stored.height !== info.height) {
    throw new CorruptPhoto("PNG decoded to an unexpected size");
  }
  return { stored, orientation: info.orientation };
}

// ---------------------------------------------------------------- pixels

function copyBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.slice().buffer as ArrayBuffer;
}

function dropAlpha(image: { width: number; height: number; data: ArrayLike<number> }): Rgb {
  const n = image.width * image.height;
  const out = new Uint8Array(n * 3);
  const src = image.data;
  for (let i = 0; i < n; i++) {
    out[i * 3] = src[i * 4];
    out[i * 3 + 1] = src[i * 4 + 1];
    out[i * 3 + 2] = src[i * 4 + 2];
  }
  return { width: image.width, height: image.height, data: out };
}

/** compositeOnWhite returns RGBA pixels over opaque white, as Pillow's alpha_composite. */
export function compositeOnWhite(image: {
  width: number;
  height: number;
  data: ArrayLike<number>;
}): Rgb {
  const n = image.width * image.height;
  const out = new Uint8Array(n * 3);
  const src = image.data;
  for (let i = 0; i < n; i++) {
    const a = src[i * 4 + 3];
    for (let c = 0; c < 3; c++) {
      let value = 255;
      if (a !== 0) {
        // Pillow: coef1 = a*128, coef2 = (255-a)*128 over a white, opaque background.
        const tmp = src[i * 4 + c] * a * 128 + 255 * (255 - a) * 128 + (128 << 7);
        value = (((tmp >>> 8) + tmp) >>> 8) >>> 7;
      }
      out[i * 3 + c] = value;
    }
  }
  return { width: image.width, height: image.height, data: out };
}

/** scaleGrey16 maps 16-bit grey to 0..255 as the hasher does: rint(v * 255/65535). */
export function scaleGrey16(image: { width: number; height: number; data: Uint16Array }): Rgb {
  const n = image.width * image.height;
  const out = new Uint8Array(n * 3);
  const factor = 255.0 / 65535.0;
  for (let i = 0; i < n; i++) {
    const x = image.data[i * 4] * factor;
    let r = Math.round(x);
    if (x - Math.floor(x) === 0.5 && r % 2 === 1) r -= 1; // numpy rounds half to even
    out[i * 3] = r;
    out[i * 3 + 1] = r;
    out[i * 3 + 2] = r;
  }
  return { width: image.width, height: image.height, data: out };
}

/**
 * decodePhoto returns the pixels of a JPEG or PNG file as the node's hasher sees them.
 * It throws NeedsCommandLine for any other format or variant it cannot match exactly.
 */
export async function decodePhoto(
  bytes: Uint8Array,
  format: string,
  codecs: Codecs,
): Promise<DecodedPhoto> {
  try {
    if (format === "jpeg") return await decodeJpeg(bytes, codecs);
    if (format === "png") return await decodePng(bytes, codecs);
  } catch (e) {
    if (e instanceof NeedsCommandLine || e instanceof CorruptPhoto) throw e;
    throw new CorruptPhoto(`cannot decode ${format.toUpperCase()}: ${String(e)}`);
  }
  throw new NeedsCommandLine(`${format.toUpperCase()} files`);
}
