import { pino, type DestinationStream, type Logger } from 'pino';

/**
 * The gateway's structured log. Callers log only fixed fields (event, route, status, codes,
 * ids, durations); request and response bodies, headers and PII values are never passed to
 * it, and the redact paths below are a second line of defence for fields that must not appear.
 */
export function createGatewayLogger(options: { level?: string; destination?: DestinationStream } = {}): Logger {
  const opts = {
    level: options.level ?? 'info',
    base: { service: 'custody-gateway' },
    redact: { paths: ['authorization', 'headers', 'body', 'prompt', 'messages', 'content', 'input', '*.authorization', '*.headers', '*.body'], censor: '[withheld]' },
  };
  return options.destination ? pino(opts, options.destination) : pino(opts);
}
