// A broker process for multi-replica tests: storage from the environment (see
// storageConfigFromEnv), HPKE, the CEL test double, interim local audit. Prints one JSON
// line {"url": ...} when listening and stops on SIGTERM. Not part of the build.
import { openBroker } from '../broker.js';
import { storageConfigFromEnv } from '../config.js';
import { serveBroker } from '../serve.js';
import { MiniPolicyEvaluatorTestDouble } from './doubles.js';

const broker = await openBroker(storageConfigFromEnv(process.env), { policy: new MiniPolicyEvaluatorTestDouble() });
const server = await serveBroker(broker.app, { port: 0 });
process.stdout.write(JSON.stringify({ url: server.url, pid: process.pid }) + '\n');

let stopping = false;
process.on('SIGTERM', () => {
  if (stopping) return;
  stopping = true;
  void server
    .close()
    .then(() => broker.close())
    .finally(() => process.exit(0));
});
