export * from './errors.js';
export * from './bytes.js';
export * from './reader.js';
export * from './canonical-json.js';
export * from './crypto.js';
export * from './clock.js';
export * from './pem.js';
export * from './x509/index.js';
