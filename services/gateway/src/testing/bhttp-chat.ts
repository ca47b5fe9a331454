import { request, type ClientRequest, type IncomingMessage } from 'node:http';
import { utf8, type Bytes } from '@custody/core';
import { encapsulateChunkedRequest, encodeBhttpRequest, parseRuntimeData, readAll, type AttestationBundle, type ChunkedClientContext, type KeyConfig } from '@custody/sdk';

/**
 * A chat completion request as the SDK puts it inside OHTTP, for tests that seal requests by
 * hand: Binary HTTP, the tenant's API key, a Date header (default now), one user message.
 * `stream`: a streamed request, with indeterminate framing (chunked OHTTP).
 */
export function bhttpChatRequest(o: { apiKey: string; model: string; content?: string; stream?: boolean; date?: Date }): Uint8Array {
  return encodeBhttpRequest(
    {
      method: 'POST',
      scheme: 'https',
      authority: 'gateway',
      path: '/v1/chat/completions',
      headers: [
        ['authorization', `Bearer ${o.apiKey}`],
        ['content-type', 'application/json'],
        ['date', (o.date ?? new Date()).toUTCString()],
      ],
      content: utf8(JSON.stringify({ model: o.model, ...(o.stream ? { stream: true } : {}), messages: [{ role: 'user', content: o.content ?? 'hello' }] })),
    },
    o.stream ? { framing: 'indeterminate' } : {},
  );
}

/** The OHTTP key configuration a running gateway publishes now (its first). */
export async function publishedKeyConfig(gatewayUrl: string): Promise<KeyConfig> {
  const bundle = (await (await fetch(`${gatewayUrl}/.well-known/custody/attestation`)).json()) as AttestationBundle;
  return parseRuntimeData(bundle.runtimeData).keyConfigs[0]!;
}

/** A chat request sealed as one chunked OHTTP message to what `gatewayUrl` publishes, with its client context. */
export async function sealedChunkedChat(gatewayUrl: string, o: Parameters<typeof bhttpChatRequest>[0]): Promise<{ sealed: Bytes; context: ChunkedClientContext }> {
  const { body, context } = await encapsulateChunkedRequest(await publishedKeyConfig(gatewayUrl), bhttpChatRequest(o));
  return { sealed: await readAll(body), context };
}

/**
 * POSTs sealed bytes to `/ohttp` over a connection of its own (not pooled), so a test can read a
 * little of the answer and then stop reading or hang up: `onResponse` gets the request (to
 * destroy) and the response.
 */
export function postSealedRaw(gatewayUrl: string, sealed: Uint8Array, mediaType: string, onResponse: (req: ClientRequest, res: IncomingMessage) => void): ClientRequest {
  const req = request(`${gatewayUrl}/ohttp`, { method: 'POST', agent: false, headers: { 'content-type': mediaType, 'content-length': sealed.length } }, (res) => onResponse(req, res));
  req.on('error', () => undefined);
  req.end(sealed);
  return req;
}
