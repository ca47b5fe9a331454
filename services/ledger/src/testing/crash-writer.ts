// Child process for the crash test: appends as fast as it can and reports on stdout, which is a
// pipe and therefore written synchronously on Linux, so a line printed is a line the parent sees.
//   A <index> <entry>   an append was acknowledged (durably sequenced)
//   P <size> <base64>   a checkpoint was published
//   R                   the log is open
import { utf8 } from '@custody/core';
import { openLog } from '../open.js';

const dir = process.argv[2]!;
const skey = process.env.CUSTODY_CRASH_SKEY!;
const { log } = await openLog({
  dir,
  skey,
  integrateIntervalMs: 15,
  maxBatch: 512,
  onPublish: (note, size) => process.stdout.write(`P ${size} ${Buffer.from(note).toString('base64')}\n`),
});
process.stdout.write('R\n');
let n = 0;
const worker = async (): Promise<void> => {
  for (;;) {
    const e = `crash ${process.pid} ${n++}`;
    const { index } = await log.addEntry(utf8(e));
    process.stdout.write(`A ${index} ${e}\n`);
  }
};
for (let i = 0; i < 32; i++) void worker();
// Keep the event loop alive until killed.
setInterval(() => undefined, 1 << 30);
