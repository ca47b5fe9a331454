// A vitest reporter (used next to the default one) that appends one NDJSON line per finished
// test file to the file named by CUSTODY_TEST_PROGRESS, so scripts/run-tests.mjs can see which
// files finished even if vitest never does. Lines (one JSON object each):
//   {"type":"start","files":[{"file","moduleId"}...]}        the files vitest is about to run
//   {"type":"module","file","moduleId","state","passed","failed","skipped","moduleFailed",
//    "moduleErrors","unhandledSoFar"}                          one test file finished
//   {"type":"end","reason","unhandledErrors"}                  the run finished
// `file` is relative to the vitest root, `moduleId` absolute. `moduleFailed` is true when the
// file failed without a failing test (import error, failed hook, ...): it counts as one failure,
// like a suite with no assertion results in vitest's JSON report. Tests still pending when the
// file ends count as skipped (the JSON report's "pending").
import { appendFileSync } from 'node:fs';
import { relative } from 'node:path';

export default class ProgressReporter {
  /** @type {string | undefined} */
  #out = process.env.CUSTODY_TEST_PROGRESS || undefined;
  #root = process.cwd();
  /** @type {any} */
  #vitest;

  /** @param {any} vitest */
  onInit(vitest) {
    this.#vitest = vitest;
    if (vitest?.config?.root) this.#root = vitest.config.root;
  }

  /** @param {ReadonlyArray<any>} specifications */
  onTestRunStart(specifications) {
    const seen = new Set();
    const files = [];
    for (const spec of specifications) {
      if (seen.has(spec.moduleId)) continue;
      seen.add(spec.moduleId);
      files.push({ file: this.#rel(spec.moduleId), moduleId: spec.moduleId });
    }
    this.#write({ type: 'start', files });
  }

  /** @param {any} testModule */
  onTestModuleEnd(testModule) {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const test of testModule.children.allTests()) {
      const state = test.result().state;
      if (state === 'passed') passed++;
      else if (state === 'failed') failed++;
      else skipped++; // 'skipped' (skip, todo) or still 'pending'
    }
    const state = testModule.state();
    const moduleErrors = testModule.errors().length;
    this.#write({
      type: 'module',
      file: this.#rel(testModule.moduleId),
      moduleId: testModule.moduleId,
      state,
      passed,
      failed,
      skipped,
      moduleFailed: state === 'failed' && failed === 0,
      moduleErrors,
      unhandledSoFar: this.#unhandledSoFar(),
    });
  }

  /**
   * @param {ReadonlyArray<any>} _testModules
   * @param {ReadonlyArray<unknown>} unhandledErrors
   * @param {string} reason
   */
  onTestRunEnd(_testModules, unhandledErrors, reason) {
    this.#write({ type: 'end', reason, unhandledErrors: unhandledErrors.length });
  }

  // Unhandled errors caught so far in this run, so a run stopped by the watchdog still counts
  // the ones it had (vitest's state manager; 0 when that internal API is not there).
  #unhandledSoFar() {
    try {
      const errors = this.#vitest?.state?.getUnhandledErrors?.();
      return Array.isArray(errors) ? errors.length : 0;
    } catch {
      return 0;
    }
  }

  /** @param {string} moduleId */
  #rel(moduleId) {
    return relative(this.#root, moduleId).split('\\').join('/');
  }

  /** @param {object} record */
  #write(record) {
    if (!this.#out) return;
    // One synchronous append per line: a line written before the process is killed is whole.
    appendFileSync(this.#out, JSON.stringify(record) + '\n');
  }
}
