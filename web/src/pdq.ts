/**
 * PDQ, Meta's perceptual photo hash, ported from pdqhash 0.2.8 (the C++ reference in
 * facebook/ThreatExchange pdq/cpp plus its Python wrapper) so that a browser computes
 * exactly the hash and quality the partners' pipeline computes for the same RGB pixels.
 *
 * Exactness rules, in the reference's order:
 * - Luminance is computed in float64 (as numpy does in the wrapper), then rounded once
 *   to float32: fround((0.299 R + 0.587 G) + 0.114 B).
 * - Every later step is float32 arithmetic: each +, -, *, / is rounded with Math.fround,
 *   sums accumulate left to right exactly as the C++ loops do (no fused multiply-add).
 * - The 16x64 DCT matrix is shipped as float32 bit patterns (see DCT_BITS) computed with
 *   the C library's cos, because Math.cos may differ from it in the last bit.
 *
 * The hash is written as 64 lowercase hex digits, pdqhash bit 255 first (the encoding of
 * python-threatexchange and of `hashfed hash`).
 */

/** Images with fewer rows or columns than this hash to all zeros with quality 0. */
export const MIN_HASHABLE_DIM = 5;

/** Hashes below this quality are not offered for publishing (hasher/pdq.py). */
export const PDQ_QUALITY_THRESHOLD = 50;

const fr = Math.fround;

// float32 bit patterns of D[i][j] = float(float(sqrt(2/64)) * cos(pi/2/64 * (i+1) * (2j+1))),
// row-major, 16 rows of 64: the reference's dct_matrix_64.
const DCT_BITS = new Uint32Array([
  0x3e34f6fe, 0x3e348763, 0x3e33a872, 0x3e325ab4, 0x3e309ef6, 0x3e2e764c, 0x3e2be20a, 0x3e28e3c6,
  0x3e257d59, 0x3e21b0dd, 0x3e1d80a8, 0x3e18ef51, 0x3e13ffa8, 0x3e0eb4b9, 0x3e0911c7, 0x3e031a4c,
  0x3df9a3ed, 0x3dec794d, 0x3ddebcd5, 0x3dd076ff, 0x3dc1b098, 0x3db272bd, 0x3da2c6d5, 0x3d92b689,
  0x3d824bc1, 0x3d63213d, 0x3d411ee4, 0x3d1ea570, 0x3cf7944a, 0x3cb14504, 0x3c5510d4, 0x3b8e2871,
  0xbb8e2871, 0xbc5510d4, 0xbcb14504, 0xbcf7944a, 0xbd1ea570, 0xbd411ee4, 0xbd63213d, 0xbd824bc1,
  0xbd92b689, 0xbda2c6d5, 0xbdb272bd, 0xbdc1b098, 0xbdd076ff, 0xbddebcd5, 0xbdec794d, 0xbdf9a3ed,
  0xbe031a4c, 0xbe0911c7, 0xbe0eb4b9, 0xbe13ffa8, 0xbe18ef51, 0xbe1d80a8, 0xbe21b0dd, 0xbe257d59,
  0xbe28e3c6, 0xbe2be20a, 0xbe2e764c, 0xbe309ef6, 0xbe325ab4, 0xbe33a872, 0xbe348763, 0xbe34f6fe,
  0x3e34cd21, 0x3e330f61, 0x3e2f982b, 0x3e2a700c, 0x3e23a3b9, 0x3e1b43f5, 0x3e116566, 0x3e062061,
  0x3df3215c, 0x3dd7aa8b, 0x3dba2005, 0x3d9aca9e, 0x3d73ef2f, 0x3d2fefbb, 0x3cd47d09, 0x3c0e1d7b,
  0xbc0e1d7b, 0xbcd47d09, 0xbd2fefbb, 0xbd73ef2f, 0xbd9aca9e, 0xbdba2005, 0xbdd7aa8b, 0xbdf3215c,
  0xbe062061, 0xbe116566, 0xbe1b43f5, 0xbe23a3b9, 0xbe2a700c, 0xbe2f982b, 0xbe330f61, 0xbe34cd21,
  0xbe34cd21, 0xbe330f61, 0xbe2f982b, 0xbe2a700c, 0xbe23a3b9, 0xbe1b43f5, 0xbe116566, 0xbe062061,
  0xbdf3215c, 0xbdd7aa8b, 0xbdba2005, 0xbd9aca9e, 0xbd73ef2f, 0xbd2fefbb, 0xbcd47d09, 0xbc0e1d7b,
  0x3c0e1d7b, 0x3cd47d09, 0x3d2fefbb, 0x3d73ef2f, 0x3d9aca9e, 0x3dba2005, 0x3dd7aa8b, 0x3df3215c,
  0x3e062061, 0x3e116566, 0x3e1b43f5, 0x3e23a3b9, 0x3e2a700c, 0x3e2f982b, 0x3e330f61, 0x3e34cd21,
  0x3e348763, 0x3e309ef6, 0x3e28e3c6, 0x3e1d80a8, 0x3e0eb4b9, 0x3df9a3ed, 0x3dd076ff, 0x3da2c6d5,
  0x3d63213d, 0x3cf7944a, 0x3b8e2871, 0xbcb14504, 0xbd411ee4, 0xbd92b689, 0xbdc1b098, 0xbdec794d,
  0xbe0911c7, 0xbe18ef51, 0xbe257d59, 0xbe2e764c, 0xbe33a872, 0xbe34f6fe, 0xbe325ab4, 0xbe2be20a,
  0xbe21b0dd, 0xbe13ffa8, 0xbe031a4c, 0xbddebcd5, 0xbdb272bd, 0xbd824bc1, 0xbd1ea570, 0xbc5510d4,
  0x3c5510d4, 0x3d1ea570, 0x3d824bc1, 0x3db272bd, 0x3ddebcd5, 0x3e031a4c, 0x3e13ffa8, 0x3e21b0dd,
  0x3e2be20a, 0x3e325ab4, 0x3e34f6fe, 0x3e33a872, 0x3e2e764c, 0x3e257d59, 0x3e18ef51, 0x3e0911c7,
  0x3dec794d, 0x3dc1b098, 0x3d92b689, 0x3d411ee4, 0x3cb14504, 0xbb8e2871, 0xbcf7944a, 0xbd63213d,
  0xbda2c6d5, 0xbdd076ff, 0xbdf9a3ed, 0xbe0eb4b9, 0xbe1d80a8, 0xbe28e3c6, 0xbe309ef6, 0xbe348763,
  0x3e3425ce, 0x3e2d3986, 0x3e1fa512, 0x3e0bee0a, 0x3de5acc6, 0x3daaa9f2, 0x3d523045, 0x3c8df1a9,
  0xbc8df1a9, 0xbd523045, 0xbdaaa9f2, 0xbde5acc6, 0xbe0bee0a, 0xbe1fa512, 0xbe2d3986, 0xbe3425ce,
  0xbe3425ce, 0xbe2d3986, 0xbe1fa512, 0xbe0bee0a, 0xbde5acc6, 0xbdaaa9f2, 0xbd523045, 0xbc8df1a9,
  0x3c8df1a9, 0x3d523045, 0x3daaa9f2, 0x3de5acc6, 0x3e0bee0a, 0x3e1fa512, 0x3e2d3986, 0x3e3425ce,
  0x3e3425ce, 0x3e2d3986, 0x3e1fa512, 0x3e0bee0a, 0x3de5acc6, 0x3daaa9f2, 0x3d523045, 0x3c8df1a9,
  0xbc8df1a9, 0xbd523045, 0xbdaaa9f2, 0xbde5acc6, 0xbe0bee0a, 0xbe1fa512, 0xbe2d3986, 0xbe3425ce,
  0xbe3425ce, 0xbe2d3986, 0xbe1fa512, 0xbe0bee0a, 0xbde5acc6, 0xbdaaa9f2, 0xbd523045, 0xbc8df1a9,
  0x3c8df1a9, 0x3d523045, 0x3daaa9f2, 0x3de5acc6, 0x3e0bee0a, 0x3e1fa512, 0x3e2d3986, 0x3e3425ce,
  0x3e33a872, 0x3e28e3c6, 0x3e13ffa8, 0x3dec794d, 0x3da2c6d5, 0x3d1ea570, 0xbb8e2871, 0xbd411ee4,
  0xbdb272bd, 0xbdf9a3ed, 0xbe18ef51, 0xbe2be20a, 0xbe348763, 0xbe325ab4, 0xbe257d59, 0xbe0eb4b9,
  0xbddebcd5, 0xbd92b689, 0xbcf7944a, 0x3c5510d4, 0x3d63213d, 0x3dc1b098, 0x3e031a4c, 0x3e1d80a8,
  0x3e2e764c, 0x3e34f6fe, 0x3e309ef6, 0x3e21b0dd, 0x3e0911c7, 0x3dd076ff, 0x3d824bc1, 0x3cb14504,
  0xbcb14504, 0xbd824bc1, 0xbdd076ff, 0xbe0911c7, 0xbe21b0dd, 0xbe309ef6, 0xbe34f6fe, 0xbe2e764c,
  0xbe1d80a8, 0xbe031a4c, 0xbdc1b098, 0xbd63213d, 0xbc5510d4, 0x3cf7944a, 0x3d92b689, 0x3ddebcd5,
  0x3e0eb4b9, 0x3e257d59, 0x3e325ab4, 0x3e348763, 0x3e2be20a, 0x3e18ef51, 0x3df9a3ed, 0x3db272bd,
  0x3d411ee4, 0x3b8e2871, 0xbd1ea570, 0xbda2c6d5, 0xbdec794d, 0xbe13ffa8, 0xbe28e3c6, 0xbe33a872,
  0x3e330f61, 0x3e23a3b9, 0x3e062061, 0x3dba2005, 0x3d2fefbb, 0xbc0e1d7b, 0xbd73ef2f, 0xbdd7aa8b,
  0xbe116566, 0xbe2a700c, 0xbe34cd21, 0xbe2f982b, 0xbe1b43f5, 0xbdf3215c, 0xbd9aca9e, 0xbcd47d09,
  0x3cd47d09, 0x3d9aca9e, 0x3df3215c, 0x3e1b43f5, 0x3e2f982b, 0x3e34cd21, 0x3e2a700c, 0x3e116566,
  0x3dd7aa8b, 0x3d73ef2f, 0x3c0e1d7b, 0xbd2fefbb, 0xbdba2005, 0xbe062061, 0xbe23a3b9, 0xbe330f61,
  0xbe330f61, 0xbe23a3b9, 0xbe062061, 0xbdba2005, 0xbd2fefbb, 0x3c0e1d7b, 0x3d73ef2f, 0x3dd7aa8b,
  0x3e116566, 0x3e2a700c, 0x3e34cd21, 0x3e2f982b, 0x3e1b43f5, 0x3df3215c, 0x3d9aca9e, 0x3cd47d09,
  0xbcd47d09, 0xbd9aca9e, 0xbdf3215c, 0xbe1b43f5, 0xbe2f982b, 0xbe34cd21, 0xbe2a700c, 0xbe116566,
  0xbdd7aa8b, 0xbd73ef2f, 0xbc0e1d7b, 0x3d2fefbb, 0x3dba2005, 0x3e062061, 0x3e23a3b9, 0x3e330f61,
  0x3e325ab4, 0x3e1d80a8, 0x3dec794d, 0x3d824bc1, 0x3b8e2871, 0xbd63213d, 0xbddebcd5, 0xbe18ef51,
  0xbe309ef6, 0xbe33a872, 0xbe21b0dd, 0xbdf9a3ed, 0xbd92b689, 0xbc5510d4, 0x3d411ee4, 0x3dd076ff,
  0x3e13ffa8, 0x3e2e764c, 0x3e348763, 0x3e257d59, 0x3e031a4c, 0x3da2c6d5, 0x3cb14504, 0xbd1ea570,
  0xbdc1b098, 0xbe0eb4b9, 0xbe2be20a, 0xbe34f6fe, 0xbe28e3c6, 0xbe0911c7, 0xbdb272bd, 0xbcf7944a,
  0x3cf7944a, 0x3db272bd, 0x3e0911c7, 0x3e28e3c6, 0x3e34f6fe, 0x3e2be20a, 0x3e0eb4b9, 0x3dc1b098,
  0x3d1ea570, 0xbcb14504, 0xbda2c6d5, 0xbe031a4c, 0xbe257d59, 0xbe348763, 0xbe2e764c, 0xbe13ffa8,
  0xbdd076ff, 0xbd411ee4, 0x3c5510d4, 0x3d92b689, 0x3df9a3ed, 0x3e21b0dd, 0x3e33a872, 0x3e309ef6,
  0x3e18ef51, 0x3ddebcd5, 0x3d63213d, 0xbb8e2871, 0xbd824bc1, 0xbdec794d, 0xbe1d80a8, 0xbe325ab4,
  0x3e318a85, 0x3e168317, 0x3dc9234e, 0x3d0d42af, 0xbd0d42af, 0xbdc9234e, 0xbe168317, 0xbe318a85,
  0xbe318a85, 0xbe168317, 0xbdc9234e, 0xbd0d42af, 0x3d0d42af, 0x3dc9234e, 0x3e168317, 0x3e318a85,
  0x3e318a85, 0x3e168317, 0x3dc9234e, 0x3d0d42af, 0xbd0d42af, 0xbdc9234e, 0xbe168317, 0xbe318a85,
  0xbe318a85, 0xbe168317, 0xbdc9234e, 0xbd0d42af, 0x3d0d42af, 0x3dc9234e, 0x3e168317, 0x3e318a85,
  0x3e318a85, 0x3e168317, 0x3dc9234e, 0x3d0d42af, 0xbd0d42af, 0xbdc9234e, 0xbe168317, 0xbe318a85,
  0xbe318a85, 0xbe168317, 0xbdc9234e, 0xbd0d42af, 0x3d0d42af, 0x3dc9234e, 0x3e168317, 0x3e318a85,
  0x3e318a85, 0x3e168317, 0x3dc9234e, 0x3d0d42af, 0xbd0d42af, 0xbdc9234e, 0xbe168317, 0xbe318a85,
  0xbe318a85, 0xbe168317, 0xbdc9234e, 0xbd0d42af, 0x3d0d42af, 0x3dc9234e, 0x3e168317, 0x3e318a85,
  0x3e309ef6, 0x3e0eb4b9, 0x3da2c6d5, 0x3b8e2871, 0xbd92b689, 0xbe0911c7, 0xbe2e764c, 0xbe325ab4,
  0xbe13ffa8, 0xbdb272bd, 0xbc5510d4, 0x3d824bc1, 0x3e031a4c, 0x3e2be20a, 0x3e33a872, 0x3e18ef51,
  0x3dc1b098, 0x3cb14504, 0xbd63213d, 0xbdf9a3ed, 0xbe28e3c6, 0xbe348763, 0xbe1d80a8, 0xbdd076ff,
  0xbcf7944a, 0x3d411ee4, 0x3dec794d, 0x3e257d59, 0x3e34f6fe, 0x3e21b0dd, 0x3ddebcd5, 0x3d1ea570,
  0xbd1ea570, 0xbddebcd5, 0xbe21b0dd, 0xbe34f6fe, 0xbe257d59, 0xbdec794d, 0xbd411ee4, 0x3cf7944a,
  0x3dd076ff, 0x3e1d80a8, 0x3e348763, 0x3e28e3c6, 0x3df9a3ed, 0x3d63213d, 0xbcb14504, 0xbdc1b098,
  0xbe18ef51, 0xbe33a872, 0xbe2be20a, 0xbe031a4c, 0xbd824bc1, 0x3c5510d4, 0x3db272bd, 0x3e13ffa8,
  0x3e325ab4, 0x3e2e764c, 0x3e0911c7, 0x3d92b689, 0xbb8e2871, 0xbda2c6d5, 0xbe0eb4b9, 0xbe309ef6,
  0x3e2f982b, 0x3e062061, 0x3d73ef2f, 0xbcd47d09, 0xbdd7aa8b, 0xbe23a3b9, 0xbe34cd21, 0xbe1b43f5,
  0xbdba2005, 0xbc0e1d7b, 0x3d9aca9e, 0x3e116566, 0x3e330f61, 0x3e2a700c, 0x3df3215c, 0x3d2fefbb,
  0xbd2fefbb, 0xbdf3215c, 0xbe2a700c, 0xbe330f61, 0xbe116566, 0xbd9aca9e, 0x3c0e1d7b, 0x3dba2005,
  0x3e1b43f5, 0x3e34cd21, 0x3e23a3b9, 0x3dd7aa8b, 0x3cd47d09, 0xbd73ef2f, 0xbe062061, 0xbe2f982b,
  0xbe2f982b, 0xbe062061, 0xbd73ef2f, 0x3cd47d09, 0x3dd7aa8b, 0x3e23a3b9, 0x3e34cd21, 0x3e1b43f5,
  0x3dba2005, 0x3c0e1d7b, 0xbd9aca9e, 0xbe116566, 0xbe330f61, 0xbe2a700c, 0xbdf3215c, 0xbd2fefbb,
  0x3d2fefbb, 0x3df3215c, 0x3e2a700c, 0x3e330f61, 0x3e116566, 0x3d9aca9e, 0xbc0e1d7b, 0xbdba2005,
  0xbe1b43f5, 0xbe34cd21, 0xbe23a3b9, 0xbdd7aa8b, 0xbcd47d09, 0x3d73ef2f, 0x3e062061, 0x3e2f982b,
  0x3e2e764c, 0x3df9a3ed, 0x3d1ea570, 0xbd63213d, 0xbe0911c7, 0xbe325ab4, 0xbe28e3c6, 0xbddebcd5,
  0xbcb14504, 0x3d92b689, 0x3e13ffa8, 0x3e348763, 0x3e21b0dd, 0x3dc1b098, 0x3b8e2871, 0xbdb272bd,
  0xbe1d80a8, 0xbe34f6fe, 0xbe18ef51, 0xbda2c6d5, 0x3c5510d4, 0x3dd076ff, 0x3e257d59, 0x3e33a872,
  0x3e0eb4b9, 0x3d824bc1, 0xbcf7944a, 0xbdec794d, 0xbe2be20a, 0xbe309ef6, 0xbe031a4c, 0xbd411ee4,
  0x3d411ee4, 0x3e031a4c, 0x3e309ef6, 0x3e2be20a, 0x3dec794d, 0x3cf7944a, 0xbd824bc1, 0xbe0eb4b9,
  0xbe33a872, 0xbe257d59, 0xbdd076ff, 0xbc5510d4, 0x3da2c6d5, 0x3e18ef51, 0x3e34f6fe, 0x3e1d80a8,
  0x3db272bd, 0xbb8e2871, 0xbdc1b098, 0xbe21b0dd, 0xbe348763, 0xbe13ffa8, 0xbd92b689, 0x3cb14504,
  0x3ddebcd5, 0x3e28e3c6, 0x3e325ab4, 0x3e0911c7, 0x3d63213d, 0xbd1ea570, 0xbdf9a3ed, 0xbe2e764c,
  0x3e2d3986, 0x3de5acc6, 0x3c8df1a9, 0xbdaaa9f2, 0xbe1fa512, 0xbe3425ce, 0xbe0bee0a, 0xbd523045,
  0x3d523045, 0x3e0bee0a, 0x3e3425ce, 0x3e1fa512, 0x3daaa9f2, 0xbc8df1a9, 0xbde5acc6, 0xbe2d3986,
  0xbe2d3986, 0xbde5acc6, 0xbc8df1a9, 0x3daaa9f2, 0x3e1fa512, 0x3e3425ce, 0x3e0bee0a, 0x3d523045,
  0xbd523045, 0xbe0bee0a, 0xbe3425ce, 0xbe1fa512, 0xbdaaa9f2, 0x3c8df1a9, 0x3de5acc6, 0x3e2d3986,
  0x3e2d3986, 0x3de5acc6, 0x3c8df1a9, 0xbdaaa9f2, 0xbe1fa512, 0xbe3425ce, 0xbe0bee0a, 0xbd523045,
  0x3d523045, 0x3e0bee0a, 0x3e3425ce, 0x3e1fa512, 0x3daaa9f2, 0xbc8df1a9, 0xbde5acc6, 0xbe2d3986,
  0xbe2d3986, 0xbde5acc6, 0xbc8df1a9, 0x3daaa9f2, 0x3e1fa512, 0x3e3425ce, 0x3e0bee0a, 0x3d523045,
  0xbd523045, 0xbe0bee0a, 0xbe3425ce, 0xbe1fa512, 0xbdaaa9f2, 0x3c8df1a9, 0x3de5acc6, 0x3e2d3986,
  0x3e2be20a, 0x3dd076ff, 0xbb8e2871, 0xbddebcd5, 0xbe2e764c, 0xbe28e3c6, 0xbdc1b098, 0x3c5510d4,
  0x3dec794d, 0x3e309ef6, 0x3e257d59, 0x3db272bd, 0xbcb14504, 0xbdf9a3ed, 0xbe325ab4, 0xbe21b0dd,
  0xbda2c6d5, 0x3cf7944a, 0x3e031a4c, 0x3e33a872, 0x3e1d80a8, 0x3d92b689, 0xbd1ea570, 0xbe0911c7,
  0xbe348763, 0xbe18ef51, 0xbd824bc1, 0x3d411ee4, 0x3e0eb4b9, 0x3e34f6fe, 0x3e13ffa8, 0x3d63213d,
  0xbd63213d, 0xbe13ffa8, 0xbe34f6fe, 0xbe0eb4b9, 0xbd411ee4, 0x3d824bc1, 0x3e18ef51, 0x3e348763,
  0x3e0911c7, 0x3d1ea570, 0xbd92b689, 0xbe1d80a8, 0xbe33a872, 0xbe031a4c, 0xbcf7944a, 0x3da2c6d5,
  0x3e21b0dd, 0x3e325ab4, 0x3df9a3ed, 0x3cb14504, 0xbdb272bd, 0xbe257d59, 0xbe309ef6, 0xbdec794d,
  0xbc5510d4, 0x3dc1b098, 0x3e28e3c6, 0x3e2e764c, 0x3ddebcd5, 0x3b8e2871, 0xbdd076ff, 0xbe2be20a,
  0x3e2a700c, 0x3dba2005, 0xbcd47d09, 0xbe062061, 0xbe34cd21, 0xbe116566, 0xbd2fefbb, 0x3d9aca9e,
  0x3e23a3b9, 0x3e2f982b, 0x3dd7aa8b, 0xbc0e1d7b, 0xbdf3215c, 0xbe330f61, 0xbe1b43f5, 0xbd73ef2f,
  0x3d73ef2f, 0x3e1b43f5, 0x3e330f61, 0x3df3215c, 0x3c0e1d7b, 0xbdd7aa8b, 0xbe2f982b, 0xbe23a3b9,
  0xbd9aca9e, 0x3d2fefbb, 0x3e116566, 0x3e34cd21, 0x3e062061, 0x3cd47d09, 0xbdba2005, 0xbe2a700c,
  0xbe2a700c, 0xbdba2005, 0x3cd47d09, 0x3e062061, 0x3e34cd21, 0x3e116566, 0x3d2fefbb, 0xbd9aca9e,
  0xbe23a3b9, 0xbe2f982b, 0xbdd7aa8b, 0x3c0e1d7b, 0x3df3215c, 0x3e330f61, 0x3e1b43f5, 0x3d73ef2f,
  0xbd73ef2f, 0xbe1b43f5, 0xbe330f61, 0xbdf3215c, 0xbc0e1d7b, 0x3dd7aa8b, 0x3e2f982b, 0x3e23a3b9,
  0x3d9aca9e, 0xbd2fefbb, 0xbe116566, 0xbe34cd21, 0xbe062061, 0xbcd47d09, 0x3dba2005, 0x3e2a700c,
  0x3e28e3c6, 0x3da2c6d5, 0xbd411ee4, 0xbe18ef51, 0xbe325ab4, 0xbddebcd5, 0x3c5510d4, 0x3e031a4c,
  0x3e34f6fe, 0x3e0911c7, 0x3cb14504, 0xbdd076ff, 0xbe309ef6, 0xbe1d80a8, 0xbd63213d, 0x3d92b689,
  0x3e257d59, 0x3e2be20a, 0x3db272bd, 0xbd1ea570, 0xbe13ffa8, 0xbe33a872, 0xbdec794d, 0x3b8e2871,
  0x3df9a3ed, 0x3e348763, 0x3e0eb4b9, 0x3cf7944a, 0xbdc1b098, 0xbe2e764c, 0xbe21b0dd, 0xbd824bc1,
  0x3d824bc1, 0x3e21b0dd, 0x3e2e764c, 0x3dc1b098, 0xbcf7944a, 0xbe0eb4b9, 0xbe348763, 0xbdf9a3ed,
  0xbb8e2871, 0x3dec794d, 0x3e33a872, 0x3e13ffa8, 0x3d1ea570, 0xbdb272bd, 0xbe2be20a, 0xbe257d59,
  0xbd92b689, 0x3d63213d, 0x3e1d80a8, 0x3e309ef6, 0x3dd076ff, 0xbcb14504, 0xbe0911c7, 0xbe34f6fe,
  0xbe031a4c, 0xbc5510d4, 0x3ddebcd5, 0x3e325ab4, 0x3e18ef51, 0x3d411ee4, 0xbda2c6d5, 0xbe28e3c6,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
  0x3e273d74, 0x3d8a8bd4, 0xbd8a8bd4, 0xbe273d74, 0xbe273d74, 0xbd8a8bd4, 0x3d8a8bd4, 0x3e273d74,
]);
const DCT = new Float32Array(DCT_BITS.buffer);

/** The result of hashing one image. */
export interface PdqResult {
  /** 64 lowercase hex characters. */
  hash: string;
  /** 0..100; below PDQ_QUALITY_THRESHOLD the hash is too featureless to publish. */
  quality: number;
}

/**
 * lumaFromRgb returns the float32 luminance of `width` x `height` pixels, given with
 * `channels` bytes each (3 for RGB, 4 for RGBA whose alpha is ignored), as the wrapper
 * computes it: in float64, then cast to float32.
 */
export function lumaFromRgb(
  pixels: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  channels: number,
): Float32Array {
  const n = width * height;
  if (pixels.length < n * channels) {
    throw new Error(`pixel buffer too short: ${pixels.length} bytes for ${width}x${height}`);
  }
  const luma = new Float32Array(n);
  for (let i = 0, p = 0; i < n; i++, p += channels) {
    luma[i] = pixels[p] * 0.299 + pixels[p + 1] * 0.587 + pixels[p + 2] * 0.114;
  }
  return luma;
}

/** jaroszWindowSize returns the box filter's window along a dimension (rounded up). */
export function jaroszWindowSize(oldDimension: number, newDimension: number): number {
  return Math.trunc((oldDimension + 2 * newDimension - 1) / (2 * newDimension));
}

function box1D(
  input: Float32Array,
  output: Float32Array,
  start: number,
  length: number,
  stride: number,
  fullWindow: number,
): void {
  const halfWindow = Math.trunc((fullWindow + 2) / 2);
  const phase1 = halfWindow - 1;
  const phase2 = fullWindow - halfWindow + 1;
  const phase3 = length - fullWindow;
  const phase4 = halfWindow - 1;
  let li = start;
  let ri = start;
  let oi = start;
  let sum = 0;
  let window = 0;
  for (let i = 0; i < phase1; i++) {
    sum = fr(sum + input[ri]);
    window++;
    ri += stride;
  }
  for (let i = 0; i < phase2; i++) {
    sum = fr(sum + input[ri]);
    window++;
    output[oi] = sum / window;
    ri += stride;
    oi += stride;
  }
  for (let i = 0; i < phase3; i++) {
    sum = fr(sum + input[ri]);
    sum = fr(sum - input[li]);
    output[oi] = sum / window;
    li += stride;
    ri += stride;
    oi += stride;
  }
  for (let i = 0; i < phase4; i++) {
    sum = fr(sum - input[li]);
    window--;
    output[oi] = sum / window;
    li += stride;
    oi += stride;
  }
}

function jaroszFilter(
  buffer1: Float32Array,
  buffer2: Float32Array,
  rows: number,
  cols: number,
  windowAlongRows: number,
  windowAlongCols: number,
  passes: number,
): void {
  for (let pass = 0; pass < passes; pass++) {
    for (let i = 0; i < rows; i++) box1D(buffer1, buffer2, i * cols, cols, 1, windowAlongRows);
    for (let j = 0; j < cols; j++) box1D(buffer2, buffer1, j, rows, cols, windowAlongCols);
  }
}

function decimate(input: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(64 * 64);
  for (let oi = 0; oi < 64; oi++) {
    const ii = Math.trunc(((oi + 0.5) * rows) / 64);
    for (let oj = 0; oj < 64; oj++) {
      const ij = Math.trunc(((oj + 0.5) * cols) / 64);
      out[oi * 64 + oj] = input[ii * cols + ij];
    }
  }
  return out;
}

/** qualityMetric returns the reference's gradient-based quality of a 64x64 buffer. */
function qualityMetric(b: Float32Array): number {
  let gradientSum = 0;
  for (let i = 0; i < 63; i++) {
    for (let j = 0; j < 64; j++) {
      const d = Math.trunc(fr(fr(fr(b[i * 64 + j] - b[(i + 1) * 64 + j]) * 100) / 255));
      gradientSum += Math.abs(d);
    }
  }
  for (let i = 0; i < 64; i++) {
    for (let j = 0; j < 63; j++) {
      const d = Math.trunc(fr(fr(fr(b[i * 64 + j] - b[i * 64 + j + 1]) * 100) / 255));
      gradientSum += Math.abs(d);
    }
  }
  return Math.min(Math.trunc(gradientSum / 90), 100);
}

/** dct64To16 returns slots 1..16 x 1..16 of the 2D DCT of a 64x64 buffer (B = D A Dt). */
function dct64To16(a: Float32Array): Float32Array {
  const t = new Float32Array(16 * 64);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 64; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = fr(sum + fr(DCT[i * 64 + k] * a[k * 64 + j]));
      t[i * 64 + j] = sum;
    }
  }
  const b = new Float32Array(16 * 16);
  for (let i = 0; i < 16; i++) {
    for (let j = 0; j < 16; j++) {
      let sum = 0;
      for (let k = 0; k < 64; k++) sum = fr(sum + fr(t[i * 64 + k] * DCT[j * 64 + k]));
      b[i * 16 + j] = sum;
    }
  }
  return b;
}

/** torben returns the median of `m` by Torben Mogensen's method, as the reference does. */
function torben(m: Float32Array): number {
  const n = m.length;
  let min = m[0];
  let max = m[0];
  for (let i = 1; i < n; i++) {
    if (m[i] < min) min = m[i];
    if (m[i] > max) max = m[i];
  }
  let less = 0;
  let greater = 0;
  let equal = 0;
  let guess = 0;
  let maxLtGuess = 0;
  let minGtGuess = 0;
  for (;;) {
    guess = fr(fr(min + max) / 2);
    less = 0;
    greater = 0;
    equal = 0;
    maxLtGuess = min;
    minGtGuess = max;
    for (let i = 0; i < n; i++) {
      if (m[i] < guess) {
        less++;
        if (m[i] > maxLtGuess) maxLtGuess = m[i];
      } else if (m[i] > guess) {
        greater++;
        if (m[i] < minGtGuess) minGtGuess = m[i];
      } else {
        equal++;
      }
    }
    const half = Math.trunc((n + 1) / 2);
    if (less <= half && greater <= half) break;
    if (less > greater) max = maxLtGuess;
    else min = minGtGuess;
  }
  const half = Math.trunc((n + 1) / 2);
  if (less >= half) return maxLtGuess;
  if (less + equal >= half) return guess;
  return minGtGuess;
}

function bitsToHex(dct: Float32Array): string {
  const median = torben(dct);
  // Bit k (= i*16 + j) is set when dct[k] > median; the hex starts with bit 255.
  let hex = "";
  for (let nibble = 0; nibble < 64; nibble++) {
    let value = 0;
    for (let b = 0; b < 4; b++) {
      const k = 255 - (nibble * 4 + b);
      value = (value << 1) | (dct[k] > median ? 1 : 0);
    }
    hex += value.toString(16);
  }
  return hex;
}

/**
 * pdqFromLuma returns the PDQ hash and quality of a float32 luminance image (row-major,
 * `height` rows of `width`). The buffer is used as scratch space and overwritten.
 */
export function pdqFromLuma(luma: Float32Array, width: number, height: number): PdqResult {
  if (height < MIN_HASHABLE_DIM || width < MIN_HASHABLE_DIM) {
    return { hash: "0".repeat(64), quality: 0 };
  }
  let buffer64: Float32Array;
  if (height === 64 && width === 64) {
    buffer64 = Float32Array.from(luma);
  } else {
    const scratch = new Float32Array(width * height);
    jaroszFilter(
      luma,
      scratch,
      height,
      width,
      jaroszWindowSize(width, 64),
      jaroszWindowSize(height, 64),
      2,
    );
    buffer64 = decimate(luma, height, width);
  }
  const quality = qualityMetric(buffer64);
  return { hash: bitsToHex(dct64To16(buffer64)), quality };
}

/**
 * pdqFromRgb returns the PDQ hash and quality of 8-bit pixels with `channels` bytes each
 * (3: RGB, 4: RGBA with alpha ignored): pdqhash.compute's result on the RGB array.
 */
export function pdqFromRgb(
  pixels: Uint8Array | Uint8ClampedArray,
  width: number,
  height: number,
  channels = 3,
): PdqResult {
  return pdqFromLuma(lumaFromRgb(pixels, width, height, channels), width, height);
}
