/**
 * Which files the bank accepts, recognised from their first bytes exactly as the node's
 * hasher does (hasher/formats.py): photos are hashed with PDQ, videos with MD5 of their
 * bytes. A file is judged by its content; only TGA, which has no magic number, is
 * recognised by its extension.
 */

export type Kind = "pdq" | "md5";

/** An accepted format: its name and which hash identifies it. */
export interface Format {
  name: string;
  kind: Kind;
}

/** Bytes read from the start of a file to recognise it (DICOM's magic is at 128). */
export const HEAD_SIZE = 512;

export const ACCEPTED_PHOTO_EXTENSIONS = [
  "jpeg", "jpg", "png", "gif", "psd", "tiff", "xcf", "tga", "miff", "ico", "dcm", "xpm",
  "pcx", "bmp",
];
export const ACCEPTED_VIDEO_EXTENSIONS = ["mp4", "mov", "avi", "qt", "wmv"];

/** Formats the page decodes to the same pixels as the node; others go to `hashfed hash`. */
export const PAGE_DECODED = new Set(["jpeg", "png"]);

/** Why a file is refused: a stable code the page turns into a sentence. */
export type RefusalCode = "empty" | "mislabelled" | "not-accepted" | "unrecognised";

/** A file the bank does not accept (hashfed hash refuses it too). */
export class Refused extends Error {
  constructor(
    readonly code: RefusalCode,
    readonly extension: string,
  ) {
    super(`${code}${extension ? ` (.${extension})` : ""}`);
    this.name = "Refused";
  }
}

const ASF_GUID = [
  0x30, 0x26, 0xb2, 0x75, 0x8e, 0x66, 0xcf, 0x11, 0xa6, 0xd9, 0x00, 0xaa, 0x00, 0x62, 0xce, 0x6c,
];
const QT_ATOMS = ["moov", "mdat", "wide", "free", "skip", "pnot"];

function ascii(head: Uint8Array, start: number, end: number): string {
  return String.fromCharCode(...head.subarray(start, end));
}

function startsWith(head: Uint8Array, bytes: number[], at = 0): boolean {
  if (head.length < at + bytes.length) return false;
  return bytes.every((b, i) => head[at + i] === b);
}

function photo(name: string): Format {
  return { name, kind: "pdq" };
}

function video(name: string): Format {
  return { name, kind: "md5" };
}

/** sniff returns the format whose magic number `head` starts with, or null. */
export function sniff(head: Uint8Array): Format | null {
  if (startsWith(head, [0xff, 0xd8, 0xff])) return photo("jpeg");
  if (startsWith(head, [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a])) return photo("png");
  const six = ascii(head, 0, 6);
  if (six === "GIF87a" || six === "GIF89a") return photo("gif");
  if (startsWith(head, [0x38, 0x42, 0x50, 0x53, 0x00, 0x01])) return photo("psd");
  const four = ascii(head, 0, 4);
  if (["II*\0", "MM\0*", "II+\0", "MM\0+"].includes(four)) return photo("tiff");
  if (ascii(head, 0, 9) === "gimp xcf ") return photo("xcf");
  if (ascii(head, 0, 14) === "id=ImageMagick") return photo("miff");
  if (startsWith(head, [0, 0, 1, 0]) && head.length >= 6 && (head[4] !== 0 || head[5] !== 0)) {
    return photo("ico");
  }
  if (ascii(head, 128, 132) === "DICM") return photo("dcm");
  let first = 0;
  while (first < head.length && [0x20, 0x09, 0x0a, 0x0d, 0x0b, 0x0c].includes(head[first])) {
    first++;
  }
  if (ascii(head, first, first + 9) === "/* XPM */") return photo("xpm");
  if (ascii(head, 0, 2) === "BM" && head.length >= 18) return photo("bmp");
  if (head.length >= 4 && head[0] === 0x0a && [0, 2, 3, 4, 5].includes(head[1]) && head[2] === 1) {
    return photo("pcx");
  }
  if (four === "RIFF" && ascii(head, 8, 12) === "AVI ") return video("avi");
  if (startsWith(head, ASF_GUID)) return video("wmv");
  if (ascii(head, 4, 8) === "ftyp") return ascii(head, 8, 12) === "qt  " ? video("mov") : video("mp4");
  if (QT_ATOMS.includes(ascii(head, 4, 8))) return video("mov");
  return null;
}

/** extensionOf returns the lowercase extension of a file name, without the dot. */
export function extensionOf(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : "";
}

/**
 * detectFormat returns the accepted format of a file from its first bytes and its name,
 * or throws Refused with the reason `hashfed hash` would give.
 */
export function detectFormat(head: Uint8Array, name: string): Format {
  if (head.length === 0) throw new Refused("empty", "");
  const found = sniff(head);
  if (found !== null) return found;
  const ext = extensionOf(name);
  if (ext === "tga") return photo("tga");
  if (ACCEPTED_PHOTO_EXTENSIONS.includes(ext) || ACCEPTED_VIDEO_EXTENSIONS.includes(ext)) {
    throw new Refused("mislabelled", ext);
  }
  throw new Refused(ext ? "not-accepted" : "unrecognised", ext);
}
