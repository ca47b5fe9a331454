import type { CustodyError} from '@custody/core';
import { toCustodyError } from '@custody/core';
import type { NormalizedClaims, Platform, StepName, StepResult, VerificationErrorInfo, VerificationResult } from './types.js';

/** What a step returns when it passed without checking anything, and why. */
export interface NotChecked {
  notChecked: string;
}

/**
 * Thin orchestrator for a verification pipeline. Each step is a small function that either
 * returns a one-line account of what it checked or throws a CustodyError. The first failing
 * step stops the pipeline (fail closed); every step's outcome is kept for the report.
 */
export class Pipeline {
  readonly steps: StepResult[] = [];
  readonly errors: VerificationErrorInfo[] = [];
  readonly warnings: string[] = [];
  claims: NormalizedClaims | undefined;

  constructor(
    readonly platform: Platform,
    readonly now: Date,
  ) {}

  /**
   * Runs one step; on failure records it and rethrows to stop the pipeline. A step that passes
   * without checking anything (optional collateral missing) returns `{ notChecked: why }`.
   */
  async step<T extends string | void | NotChecked>(name: StepName, fn: () => T | Promise<T>): Promise<void> {
    try {
      const detail = await fn();
      if (typeof detail === 'object') this.steps.push({ name, ok: true, detail: detail.notChecked, checked: false });
      else this.steps.push({ name, ok: true, detail: detail || 'ok' });
    } catch (e) {
      const err = toCustodyError(e);
      this.steps.push({ name, ok: false, detail: err.message, code: err.code });
      this.errors.push({ code: err.code, message: err.message, step: name });
      throw new StopPipeline(err);
    }
  }

  /** Records a check that passed but deserves attention (e.g. an expired-soon CRL). */
  warn(message: string): void {
    this.warnings.push(message);
  }

  /** Runs the whole pipeline body and produces the result; never throws. */
  async run(body: (p: this) => Promise<void>): Promise<VerificationResult> {
    try {
      await body(this);
    } catch (e) {
      if (!(e instanceof StopPipeline)) {
        const err = toCustodyError(e);
        this.errors.push({ code: err.code, message: err.message });
      }
    }
    const result: VerificationResult = {
      ok: this.errors.length === 0 && this.steps.length > 0 && this.steps.every((s) => s.ok),
      platform: this.platform,
      steps: this.steps,
      errors: this.errors,
      warnings: this.warnings,
      verifiedAt: this.now.toISOString(),
    };
    if (this.claims) result.claims = this.claims;
    return result;
  }
}

class StopPipeline extends Error {
  constructor(readonly error: CustodyError) {
    super(error.message);
  }
}
