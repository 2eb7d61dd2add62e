/**
 * Which files the bank accepts, recognised from their content exactly as the node's
 * hasher does (hasher/formats.py): photos are hashed with PDQ, videos with MD5 of their
 * bytes. A file is judged by its first bytes; only TGA, which has no magic number, is
 * recognised by its extension. DICOM is tried first, because its 128-byte preamble may
 * itself start with another format's magic (often TIFF's). Files of the ISO media family
 * (MP4, MOV, 3GP, HEIC, AVIF) are told apart by their `ftyp` brands and, for movies, by
 * their tracks (see isobmff.ts): only a file with a video track is a video.
 */
import { AVIF_BRANDS, type ByteSource, HEIF_BRANDS, sniffBrands, trackHandlers } from "./isobmff.js";

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
  "pcx", "bmp", "heic", "heif", "avif", "webp",
];
export const ACCEPTED_VIDEO_EXTENSIONS = ["mp4", "mov", "avi", "qt", "wmv", "3gp"];

/** Formats the page decodes to the same pixels as the node; others go to `hashfed hash`. */
export const PAGE_DECODED = new Set(["jpeg", "png"]);

/** Why a file is refused: a stable code the page turns into a sentence. */
export type RefusalCode =
  | "empty"
  | "mislabelled"
  | "not-accepted"
  | "unrecognised"
  | "audio-only"
  | "no-video-track"
  | "no-movie-header";

/**
 * A file the bank does not accept (hashfed hash refuses it too). `detail` is the file's
 * extension, or for a movie-family file its format name (e.g. "MP4").
 */
export class Refused extends Error {
  constructor(
    readonly code: RefusalCode,
    readonly detail: string,
  ) {
    super(`${code}${detail ? ` (${detail})` : ""}`);
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

/** sniff returns the format that `head` (a file's first HEAD_SIZE bytes) names, or null. */
export function sniff(head: Uint8Array): Format | null {
  if (ascii(head, 128, 132) === "DICM") return photo("dcm"); // first: the preamble is free-form
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
  if (four === "RIFF" && ascii(head, 8, 12) === "WEBP") return photo("webp");
  if (startsWith(head, ASF_GUID)) return video("wmv");
  const brands = sniffBrands(head);
  if (brands !== null) return isoFormat(brands);
  if (QT_ATOMS.includes(ascii(head, 4, 8))) return video("mov");
  return null;
}

/** The format an `ftyp` box names: a photo brand wins, else the movie family. */
function isoFormat(brands: string[]): Format {
  const major = brands[0];
  if (AVIF_BRANDS.has(major)) return photo("avif");
  if (HEIF_BRANDS.has(major)) return photo("heic");
  if (brands.some((b) => AVIF_BRANDS.has(b))) return photo("avif");
  if (brands.some((b) => HEIF_BRANDS.has(b)) && !["isom", "mp41", "mp42"].includes(major)) {
    return photo("heic");
  }
  if (major === "qt  ") return video("mov");
  if (major.startsWith("3g")) return video("3gp");
  return video("mp4");
}

/** Formats of the movie family: videos only when they hold a video track. */
const MOVIE_FAMILY = new Set(["mp4", "mov", "3gp"]);

/** extensionOf returns the lowercase extension of a file name, without the dot. */
export function extensionOf(name: string): string {
  const base = name.split(/[\\/]/).pop() ?? "";
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(dot + 1).toLowerCase() : "";
}

/**
 * detectFormat returns the accepted format of a file from its first bytes and its name,
 * or throws Refused with the reason `hashfed hash` would give. A movie-family format
 * it returns still needs its tracks checked: use recognise for a whole file.
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

/**
 * checkVideoTracks throws Refused, as `hashfed hash` refuses it, unless the movie-family
 * file (`format` mp4, mov or 3gp) holds a video track.
 */
export async function checkVideoTracks(source: ByteSource, format: Format): Promise<void> {
  const handlers = await trackHandlers(source);
  const name = format.name.toUpperCase();
  if (handlers === null) throw new Refused("no-movie-header", name);
  if (handlers.includes("vide")) return;
  if (handlers.length > 0 && handlers.every((h) => h === "soun")) throw new Refused("audio-only", name);
  throw new Refused("no-video-track", name);
}

/**
 * recognise returns the accepted format of the file `source` named `name`, reading its
 * first bytes and, for a movie, its track headers; it throws Refused as detectFormat does,
 * and for movies without a video track (audio only, or no movie header at all).
 */
export async function recognise(source: ByteSource, name: string): Promise<Format> {
  const head = await source.read(0, HEAD_SIZE);
  const format = detectFormat(head, name);
  if (MOVIE_FAMILY.has(format.name)) await checkVideoTracks(source, format);
  return format;
}
