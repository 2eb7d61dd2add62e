/**
 * Photos, videos and audio of the ISO base media file family (MP4, MOV, 3GP, HEIC, AVIF),
 * told apart exactly as the node's hasher does (hasher/isobmff.py).
 *
 * Every file of the family is a run of boxes (ISO/IEC 14496-12): a 32-bit big-endian
 * size, a four-character type, then the payload; a size of 1 means a 64-bit size follows
 * the type, and 0 means "to the end of the file". The first box is usually `ftyp`: a
 * major brand, a minor version, then compatible brands. A brand alone does not say
 * whether a file holds video (M4A audio uses video-family brands), so a movie counts as
 * a video only when its `moov` box holds a track whose media handler
 * (`moov/trak/mdia/hdlr`) is `vide`. The boxes are read from a ByteSource, a few bytes
 * at a time: only the `moov` box (a few MB at most) is ever read whole.
 */

/** Brands of HEIF still images and image sequences (ISO/IEC 23008-12); HEIC is HEVC-coded. */
export const HEIF_BRANDS = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"]);
/** Brands of AVIF images and image sequences (AV1-coded HEIF). */
export const AVIF_BRANDS = new Set(["avif", "avis"]);

/** The largest `moov` box read to find the tracks (real ones are a few MB at most). */
export const MAX_MOOV_BYTES = 64 * 1024 * 1024;
/** Top-level boxes walked before giving up (a real file has a handful). */
export const MAX_TOP_LEVEL_BOXES = 10_000;

/** A file's bytes, read a range at a time (a File in the page, a buffer in tests). */
export interface ByteSource {
  size: number;
  /** read returns the bytes [offset, offset + length), fewer at the end of the file. */
  read(offset: number, length: number): Promise<Uint8Array>;
}

/** byteSourceOf returns a ByteSource over bytes already in memory. */
export function byteSourceOf(bytes: Uint8Array): ByteSource {
  return { size: bytes.length, read: async (offset, length) => bytes.subarray(offset, offset + length) };
}

/** fileSourceOf returns a ByteSource that reads a File (or Blob) slice by slice. */
export function fileSourceOf(file: Blob): ByteSource {
  return {
    size: file.size,
    read: async (offset, length) => new Uint8Array(await file.slice(offset, offset + length).arrayBuffer()),
  };
}

function fourcc(data: Uint8Array, at: number): string {
  return String.fromCharCode(data[at], data[at + 1], data[at + 2], data[at + 3]);
}

function uint32(data: Uint8Array, at: number): number {
  return ((data[at] << 24) >>> 0) + (data[at + 1] << 16) + (data[at + 2] << 8) + data[at + 3];
}

function uint64(data: Uint8Array, at: number): number {
  return uint32(data, at) * 2 ** 32 + uint32(data, at + 4);
}

/**
 * sniffBrands returns [major brand, ...compatible brands] of an `ftyp` box at offset 0,
 * or null when `head` does not start with one.
 */
export function sniffBrands(head: Uint8Array): string[] | null {
  if (head.length < 12 || fourcc(head, 4) !== "ftyp") return null;
  const end = Math.min(Math.max(uint32(head, 0), 12), head.length);
  const brands = [fourcc(head, 8)];
  for (let i = 16; i < end - 3; i += 4) brands.push(fourcc(head, i));
  return brands;
}

/** The boxes laid end to end in `data`, as [type, payload]. */
function* boxes(data: Uint8Array): Generator<[string, Uint8Array]> {
  let pos = 0;
  while (pos + 8 <= data.length) {
    let size = uint32(data, pos);
    const kind = fourcc(data, pos + 4);
    let header = 8;
    if (size === 1) {
      if (pos + 16 > data.length) return;
      size = uint64(data, pos + 8);
      header = 16;
    } else if (size === 0) {
      size = data.length - pos;
    }
    if (size < header) return;
    yield [kind, data.subarray(pos + header, Math.min(pos + size, data.length))];
    pos += size;
  }
}

function handlers(moov: Uint8Array): string[] {
  const found: string[] = [];
  for (const [kind, payload] of boxes(moov)) {
    if (kind === "trak") {
      found.push(...handlers(payload));
    } else if (kind === "mdia") {
      for (const [subKind, sub] of boxes(payload)) {
        // version/flags, pre_defined, then the handler type
        if (subKind === "hdlr" && sub.length >= 12) found.push(fourcc(sub, 8));
      }
    }
  }
  return found;
}

/**
 * trackHandlers returns the handler type of each track in the file, e.g. ["vide", "soun"],
 * or null when the file has no readable `moov` box (not a movie, or truncated). It reads
 * the top-level box headers one by one, wherever `moov` sits, and then `moov` alone.
 */
export async function trackHandlers(source: ByteSource): Promise<string[] | null> {
  const fileSize = source.size;
  let pos = 0;
  for (let n = 0; n < MAX_TOP_LEVEL_BOXES; n++) {
    if (pos + 8 > fileSize) return null;
    const header = await source.read(pos, 16);
    let size = uint32(header, 0);
    const kind = fourcc(header, 4);
    let headerSize = 8;
    if (size === 1) {
      if (header.length < 16) return null;
      size = uint64(header, 8);
      headerSize = 16;
    } else if (size === 0) {
      size = fileSize - pos;
    }
    if (size < headerSize) return null;
    if (kind === "moov") {
      const payloadSize = Math.min(size, fileSize - pos) - headerSize;
      if (payloadSize > MAX_MOOV_BYTES) return null;
      return handlers(await source.read(pos + headerSize, payloadSize));
    }
    pos += size;
  }
  return null;
}
