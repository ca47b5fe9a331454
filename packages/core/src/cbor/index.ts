export { decodeCbor, CBOR_DEFAULT_MAX_SIZE, CBOR_DEFAULT_MAX_DEPTH, CBOR_DEFAULT_MAX_ITEMS } from './decode.js';
export { encodeCbor } from './encode.js';
export { CborTag, CborFloat, CborSimple, cborTypeName, type CborValue, type CborMap, type CborKey, type CborDecodeOptions } from './types.js';
