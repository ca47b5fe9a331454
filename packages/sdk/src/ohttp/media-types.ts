import { HpkeError } from '@custody/core';

/** Media types of Oblivious HTTP (RFC 9458 section 9), chunked OHTTP and Binary HTTP (RFC 9292). */
export const OhttpMediaType = {
  Request: 'message/ohttp-req',
  Response: 'message/ohttp-res',
  Keys: 'application/ohttp-keys',
  ChunkedRequest: 'message/ohttp-chunked-req',
  ChunkedResponse: 'message/ohttp-chunked-res',
  Bhttp: 'message/bhttp',
} as const;
export type OhttpMediaType = (typeof OhttpMediaType)[keyof typeof OhttpMediaType];

/**
 * Problem type a gateway returns when a request names a key it does not hold (RFC 9458
 * section 5.3); the client then refreshes its key configuration.
 */
export const OHTTP_KEY_PROBLEM_TYPE = 'https://iana.org/assignments/http-problem-types#ohttp-key';

/** Checks a Content-Type header against one media type, ignoring case and parameters. */
export function assertMediaType(contentType: string | null | undefined, expected: OhttpMediaType): void {
  const essence = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  if (essence !== expected) {
    throw new HpkeError('ERR_OHTTP_MEDIA_TYPE', `expected ${expected}`, { detail: { expected, received: essence.slice(0, 100) } });
  }
}
