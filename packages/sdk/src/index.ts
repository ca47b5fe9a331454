export * from './ohttp/index.js';
