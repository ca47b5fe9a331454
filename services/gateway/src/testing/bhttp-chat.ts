import { utf8 } from '@custody/core';
import { encodeBhttpRequest } from '@custody/sdk';

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
