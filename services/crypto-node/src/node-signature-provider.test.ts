import { describe, expect, it } from 'vitest';
import { getSignatureProvider, setSignatureProvider } from '@custody/core';
import { describeSignatureConformance } from '../../../packages/core/src/testing/signature-conformance.js';
import { installNodeSignatureProvider, nodeSignaturePrimitives } from './node-signature-provider.js';

describeSignatureConformance(nodeSignaturePrimitives);

describe('node:crypto signature provider', () => {
  it('installs process-wide', () => {
    const previous = installNodeSignatureProvider();
    try {
      expect(getSignatureProvider()).toBe(nodeSignaturePrimitives);
    } finally {
      setSignatureProvider(previous);
    }
  });
});
