/**
 * A small bounded memo for work derived from public keys (imported CryptoKeys, SPKI digests,
 * TPM names). An AK is a long-lived identity, so a verifier that sees the same AK again skips
 * that work. Only public data goes in; a failed computation is not kept.
 */
/** A map key for bytes: one UTF-16 unit per byte, cheaper to build than hex. */
export function bytesKey(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i += 4096) s += String.fromCharCode(...b.subarray(i, i + 4096));
  return s;
}

export class PublicKeyMemo<T> {
  private readonly entries = new Map<string, Promise<T>>();

  constructor(private readonly max = 64) {}

  get(id: string, compute: () => Promise<T>): Promise<T> {
    const hit = this.entries.get(id);
    if (hit) {
      this.entries.delete(id);
      this.entries.set(id, hit);
      return hit;
    }
    const p = compute();
    p.catch(() => this.entries.delete(id));
    this.entries.set(id, p);
    if (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value!);
    return p;
  }
}

const BYTE_HEX = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** Lowercase hex with a byte table (PCR values are hex-encoded on every verification). */
export function hexOf(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += BYTE_HEX[b[i]!]!;
  return s;
}
