import { CustodyError, type CustodyErrorOptions, type ErrorCode } from '../errors.js';

/** HPKE KEM identifiers (RFC 9180 section 7.1) that Custody can use. */
export const KemId = {
  DhkemP256HkdfSha256: 0x0010,
  DhkemP384HkdfSha384: 0x0011,
  DhkemP521HkdfSha512: 0x0012,
  DhkemX25519HkdfSha256: 0x0020,
  /** Needs WebCrypto X448: present in Node, absent in Chromium. */
  DhkemX448HkdfSha512: 0x0021,
} as const;
export type KemId = (typeof KemId)[keyof typeof KemId];

/** HPKE KDF identifiers (RFC 9180 section 7.2). */
export const KdfId = {
  HkdfSha256: 0x0001,
  HkdfSha384: 0x0002,
  HkdfSha512: 0x0003,
} as const;
export type KdfId = (typeof KdfId)[keyof typeof KdfId];

/** HPKE AEAD identifiers (RFC 9180 section 7.3). */
export const AeadId = {
  Aes128Gcm: 0x0001,
  Aes256Gcm: 0x0002,
  ChaCha20Poly1305: 0x0003,
  ExportOnly: 0xffff,
} as const;
export type AeadId = (typeof AeadId)[keyof typeof AeadId];

/** HPKE modes (RFC 9180 section 5). */
export const HpkeMode = { Base: 0x00, Psk: 0x01, Auth: 0x02, AuthPsk: 0x03 } as const;
export type HpkeMode = (typeof HpkeMode)[keyof typeof HpkeMode];

/** A cipher suite named by its three registry ids. */
export interface HpkeSuiteIds {
  readonly kem: number;
  readonly kdf: number;
  readonly aead: number;
}

export interface KemParams {
  readonly id: KemId;
  readonly name: string;
  /** Nsecret, Nenc, Npk, Nsk in bytes. */
  readonly nSecret: number;
  readonly nEnc: number;
  readonly nPk: number;
  readonly nSk: number;
}

export interface KdfParams {
  readonly id: KdfId;
  readonly name: string;
  readonly hash: 'SHA-256' | 'SHA-384' | 'SHA-512';
  /** Nh in bytes. */
  readonly nH: number;
}

export interface AeadParams {
  readonly id: AeadId;
  readonly name: string;
  /** Nk, Nn, Nt in bytes (all 0 for export-only). */
  readonly nK: number;
  readonly nN: number;
  readonly nT: number;
}

export const HPKE_KEMS: Readonly<Record<number, KemParams>> = {
  [KemId.DhkemP256HkdfSha256]: { id: KemId.DhkemP256HkdfSha256, name: 'DHKEM(P-256, HKDF-SHA256)', nSecret: 32, nEnc: 65, nPk: 65, nSk: 32 },
  [KemId.DhkemP384HkdfSha384]: { id: KemId.DhkemP384HkdfSha384, name: 'DHKEM(P-384, HKDF-SHA384)', nSecret: 48, nEnc: 97, nPk: 97, nSk: 48 },
  [KemId.DhkemP521HkdfSha512]: { id: KemId.DhkemP521HkdfSha512, name: 'DHKEM(P-521, HKDF-SHA512)', nSecret: 64, nEnc: 133, nPk: 133, nSk: 66 },
  [KemId.DhkemX25519HkdfSha256]: { id: KemId.DhkemX25519HkdfSha256, name: 'DHKEM(X25519, HKDF-SHA256)', nSecret: 32, nEnc: 32, nPk: 32, nSk: 32 },
  [KemId.DhkemX448HkdfSha512]: { id: KemId.DhkemX448HkdfSha512, name: 'DHKEM(X448, HKDF-SHA512)', nSecret: 64, nEnc: 56, nPk: 56, nSk: 56 },
};

export const HPKE_KDFS: Readonly<Record<number, KdfParams>> = {
  [KdfId.HkdfSha256]: { id: KdfId.HkdfSha256, name: 'HKDF-SHA256', hash: 'SHA-256', nH: 32 },
  [KdfId.HkdfSha384]: { id: KdfId.HkdfSha384, name: 'HKDF-SHA384', hash: 'SHA-384', nH: 48 },
  [KdfId.HkdfSha512]: { id: KdfId.HkdfSha512, name: 'HKDF-SHA512', hash: 'SHA-512', nH: 64 },
};

export const HPKE_AEADS: Readonly<Record<number, AeadParams>> = {
  [AeadId.Aes128Gcm]: { id: AeadId.Aes128Gcm, name: 'AES-128-GCM', nK: 16, nN: 12, nT: 16 },
  [AeadId.Aes256Gcm]: { id: AeadId.Aes256Gcm, name: 'AES-256-GCM', nK: 32, nN: 12, nT: 16 },
  [AeadId.ChaCha20Poly1305]: { id: AeadId.ChaCha20Poly1305, name: 'ChaCha20-Poly1305', nK: 32, nN: 12, nT: 16 },
  [AeadId.ExportOnly]: { id: AeadId.ExportOnly, name: 'Export-only', nK: 0, nN: 0, nT: 0 },
};

/** Errors of the encryption layer; `code` is one of the ERR_HPKE_* / ERR_OHTTP_* codes. */
export class HpkeError extends CustodyError {
  constructor(code: ErrorCode, message?: string, options?: CustodyErrorOptions) {
    super(code, message, options);
    this.name = 'HpkeError';
  }
}

function hex4(n: number): string {
  return '0x' + n.toString(16).padStart(4, '0');
}

export function kemParams(id: number): KemParams {
  const p = HPKE_KEMS[id];
  if (!p) throw new HpkeError('ERR_HPKE_UNSUPPORTED', `KEM ${hex4(id)} is not supported`, { detail: { kem: id } });
  return p;
}

export function kdfParams(id: number): KdfParams {
  const p = HPKE_KDFS[id];
  if (!p) throw new HpkeError('ERR_HPKE_UNSUPPORTED', `KDF ${hex4(id)} is not supported`, { detail: { kdf: id } });
  return p;
}

export function aeadParams(id: number): AeadParams {
  const p = HPKE_AEADS[id];
  if (!p) throw new HpkeError('ERR_HPKE_UNSUPPORTED', `AEAD ${hex4(id)} is not supported`, { detail: { aead: id } });
  return p;
}

/** True when all three ids are ones this module implements (X448 also needs platform support). */
export function isHpkeSuiteSupported(ids: HpkeSuiteIds): boolean {
  return HPKE_KEMS[ids.kem] !== undefined && HPKE_KDFS[ids.kdf] !== undefined && HPKE_AEADS[ids.aead] !== undefined;
}

/** Human-readable suite name, for logs and verification documents. */
export function hpkeSuiteName(ids: HpkeSuiteIds): string {
  const k = HPKE_KEMS[ids.kem]?.name ?? `KEM ${hex4(ids.kem)}`;
  const d = HPKE_KDFS[ids.kdf]?.name ?? `KDF ${hex4(ids.kdf)}`;
  const a = HPKE_AEADS[ids.aead]?.name ?? `AEAD ${hex4(ids.aead)}`;
  return `${k}, ${d}, ${a}`;
}
