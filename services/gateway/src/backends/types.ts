/**
 * A model backend answers OpenAI-compatible requests inside the gateway's trust boundary: an
 * upstream server in the same TEE (vLLM, llama.cpp's server, Ollama), the in-process demo
 * model, or node-llama-cpp on a GGUF file. The gateway hands it the request body after input
 * policy and gets back bytes or a stream, which it passes through output policy.
 */
import type { Bytes } from '@custody/core';
import type { InferenceRoute } from '../pipeline/policy.js';

export type { InferenceRoute };

export interface ModelInfo {
  /** The id clients send as `model`. */
  readonly id: string;
  /** `sha256:` of the weights (or of the demo model's definition), when known. */
  readonly digest?: string;
  /** Human label shown in the bundle and `/v1/models` (e.g. `custody-demo (not a real LLM)`). */
  readonly label?: string;
  readonly ownedBy?: string;
}

export interface BackendRequest {
  readonly route: InferenceRoute;
  /** The JSON body after input policy, exactly as forwarded (its digest is in the receipt). */
  readonly body: Bytes;
  /** The same body parsed (read-only). */
  readonly json: Readonly<Record<string, unknown>>;
  readonly model: ModelInfo;
  readonly stream: boolean;
  readonly signal?: AbortSignal;
}

export interface BackendResponse {
  readonly status: number;
  readonly contentType: string;
  readonly body: Uint8Array | ReadableStream<Uint8Array>;
}

export interface ModelBackend {
  /** `upstream`, `demo` or `llama-cpp`. */
  readonly kind: string;
  models(): readonly ModelInfo[];
  handle(request: BackendRequest): Promise<BackendResponse>;
  close?(): Promise<void>;
}
