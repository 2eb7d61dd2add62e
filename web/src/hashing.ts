/**
 * hashPhoto turns a photo file's bytes into its PDQ hashes as `hashfed hash` gives them:
 * the stored pixels always, and the EXIF-oriented pixels too when the file asks for a
 * rotation or flip (variant "exif-rotated").
 */
import { type Codecs, decodePhoto, orient } from "./decode.js";
import { type PdqResult, pdqFromRgb } from "./pdq.js";

/** One PDQ hash of a photo and which pixels it covers. */
export interface PhotoHash extends PdqResult {
  variant: "stored" | "exif-rotated";
}

/** hashPhoto returns one or two PDQ hashes of a JPEG or PNG file. */
export async function hashPhoto(
  bytes: Uint8Array,
  format: string,
  codecs: Codecs,
): Promise<PhotoHash[]> {
  const decoded = await decodePhoto(bytes, format, codecs);
  const { width, height, data } = decoded.stored;
  const hashes: PhotoHash[] = [{ ...pdqFromRgb(data, width, height, 3), variant: "stored" }];
  if (decoded.orientation !== null) {
    const shown = orient(decoded.stored, decoded.orientation);
    hashes.push({ ...pdqFromRgb(shown.data, shown.width, shown.height, 3), variant: "exif-rotated" });
  }
  return hashes;
}
