// Hand-written NormalizedClaims for every platform, shaped like the verifiers' output. Values
// come from the shared vectors where one exists (SNP measurement and TCB, TDX MRTD/RTMRs, the
// NVIDIA measurement indices, the vendor root fingerprints); the rest are plausible fillers.
import type { NormalizedClaims } from '@custody/attest';

const h = (byte: string, bytes: number) => byte.repeat(bytes);

export const ROOTS = {
  amdMilanArk: '69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd',
  intelSgxRoot: '44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3',
  awsNitroG1: '641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b',
  nvidiaDevice: '102bf659d5419614c9d8e6aecebc80454eb26b1df6a769ac720b9a690b167b48',
};

const chainOf = (leaf: string, root: string) => [
  { subject: `CN=${leaf}`, issuer: `CN=${root}`, serial: '01', notBefore: '2024-01-01T00:00:00Z', notAfter: '2031-01-01T00:00:00Z', sha256: h('1', 32) },
  { subject: `CN=${root}`, issuer: `CN=${root}`, serial: '02', notBefore: '2020-01-01T00:00:00Z', notAfter: '2045-01-01T00:00:00Z', sha256: h('2', 32) },
];

export const SNP_MEASUREMENT = 'b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01';
export const SNP_HOST_DATA = h('ab', 32);

export function snpClaims(): NormalizedClaims {
  return {
    platform: 'sev-snp',
    simulated: false,
    measurements: { measurement: SNP_MEASUREMENT, hostData: SNP_HOST_DATA },
    reportData: '0102030405' + h('00', 59),
    debug: false,
    tcb: { components: { bootloader: 2, tee: 0, snp: 5, microcode: 68 } },
    signer: { chain: chainOf('SEV-VCEK', 'ARK-Milan'), rootSha256: ROOTS.amdMilanArk, kind: 'VCEK' },
    platformClaims: { vmpl: 0, policy: '0xb0000', guestSvn: 0, productName: 'Milan' },
  };
}

export const TDX = {
  mrtd: '705ee9381b8633a9fbe532b52345e8433343d2868959f57889d84ca377c395b689cac1599ccea1b7d420483a9ce5f031',
  rtmr0: 'e940da7c2712d2790e2961e00484f4fa8e6f9eed71361655ae22699476b14f9e63867eb41edd4b480fef0c59f496b288',
  rtmr1: '559cfcf42716ed6c40a48a73d5acb7da255435012f0a9f00fbe8c1c57612ede486a5684c4c9ff3ddf52315fcdca3a596',
  rtmr2: h('00', 48),
  rtmr3: h('00', 48),
};

export function tdxClaims(): NormalizedClaims {
  return {
    platform: 'tdx',
    simulated: false,
    measurements: { ...TDX, mrconfigid: h('00', 48), mrowner: h('00', 48), mrownerconfig: h('00', 48), mrseam: h('2f', 48), mrsignerseam: h('00', 48) },
    reportData: h('7c', 64),
    debug: false,
    tcb: { status: 'UpToDate', advisoryIds: [], tcbDate: '2024-11-13T00:00:00Z', components: { teeTcbSvn: '03000600000000000000000000000000', tdxTcbComp01Svn: 3, tdxTcbComp02Svn: 0, pceSvn: 13, qeIsvSvn: 8 } },
    signer: { chain: chainOf('Intel SGX PCK Certificate', 'Intel SGX Root CA'), rootSha256: ROOTS.intelSgxRoot, kind: 'PCK' },
    platformClaims: { fmspc: '50806f000000', tdAttributes: '0000001000000000', xfam: 'e718060000000000' },
  };
}

export const NITRO = { pcr0: h('a0', 48), pcr1: h('a1', 48), pcr2: h('a2', 48), pcr3: h('a3', 48), pcr4: h('a4', 48), pcr8: h('a8', 48) };

export function nitroClaims(): NormalizedClaims {
  return {
    platform: 'nitro',
    simulated: false,
    measurements: { ...NITRO },
    reportData: h('00', 32),
    debug: false,
    signer: { chain: chainOf('i-0123.us-east-1.aws.nitro-enclaves', 'aws.nitro-enclaves'), rootSha256: ROOTS.awsNitroG1, kind: 'AWS Nitro Root-G1' },
    nonce: h('00', 19) + '01',
    publicKey: h('04', 65),
    platformClaims: { moduleId: 'i-0123-enc0123', digest: 'SHA384', timestamp: 1726606030000 },
  };
}

export const TPM_AK_SHA256 = h('4b', 32);

export const TPM_PCRS: Record<string, string> = Object.fromEntries(Array.from({ length: 8 }, (_, i) => [`pcr${i}`, h((0x10 + i).toString(16), 32)]));

export function tpmClaims(): NormalizedClaims {
  return {
    platform: 'tpm',
    simulated: false,
    measurements: { ...TPM_PCRS },
    reportData: h('51', 32),
    debug: false,
    tcb: { components: { firmwareVersion: '0x2000200000000' } },
    signer: { chain: [], rootSha256: TPM_AK_SHA256, kind: 'TPM AK (no certificate)' },
    platformClaims: { pcrBank: 'sha256', firmwareVersion: '0x2000200000000', clockSafe: true },
  };
}

export function azureSnpClaims(): NormalizedClaims {
  return {
    platform: 'azure-vtpm',
    simulated: false,
    measurements: { ...TPM_PCRS },
    reportData: h('52', 32),
    debug: false,
    signer: { chain: chainOf('SEV-VCEK', 'ARK-Milan'), rootSha256: ROOTS.amdMilanArk, kind: 'AK (HCLAkPub) bound by SNP report' },
    publicKey: '{"kty":"RSA","n":"sXch","e":"AQAB"}',
    platformClaims: { pcrBank: 'sha256' },
    devices: { 'sev-snp': snpClaims() },
  };
}

export const NVIDIA: Record<string, string> = {
  measurement2: '6b9a4c9b6c7a7d4c2a3f6fdf2f9c9b1f6f2e1b93a7e9f1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6',
  measurement10: '059b32e712a153f490dbfb7976a9e275d789e28bd4803c357def2b6123327c430526bfaecc200f496d4e149fc5eade03',
  measurement12: '413d008cedd5526a79455a178154328ce960af252bdb06e7fe4080049add412488cac39ecf3d80efbdc6bdd363861773',
};

export function nvidiaClaims(): NormalizedClaims {
  return {
    platform: 'nvidia',
    simulated: false,
    measurements: { ...NVIDIA },
    reportData: h('93', 32),
    debug: false,
    signer: { chain: chainOf('GH100 A01 GSP FMC LF', 'NVIDIA Device Identity CA'), rootSha256: ROOTS.nvidiaDevice, kind: 'GPU attestation key' },
    nonce: '931d8dd0' + h('00', 28),
    platformClaims: { arch: 'Hopper', driverVersion: '550.90.07', vbiosVersion: '96.00.9f.00.01', ccMode: 'ON' },
  };
}

export const SIM_MEASUREMENT = h('5a', 48);
export const SIM_KEY_SHA256 = h('3c', 32);

export function simClaims(): NormalizedClaims {
  return {
    platform: 'sim',
    simulated: true,
    measurements: { measurement: SIM_MEASUREMENT },
    reportData: h('00', 64),
    debug: false,
    signer: { chain: [], rootSha256: SIM_KEY_SHA256, kind: 'sim software key (Ed25519)' },
    platformClaims: { label: 'SIMULATED - no hardware TEE' },
  };
}

/** A policy naming every fixture above as the expected workload. */
export const POLICY_YAML = `
apiVersion: custody.dev/policy/v1
id: trainer
version: 3
description: reference values for the trainer image on every platform
platforms:
  sev-snp:
    measurement: ${SNP_MEASUREMENT}
    hostData: ${SNP_HOST_DATA}
    signerRoots: [${ROOTS.amdMilanArk}]
    tcb:
      minSvn: { bootloader: 2, tee: 0, snp: 5, microcode: 68 }
  tdx:
    mrtd: ${TDX.mrtd}
    rtmr0: ${TDX.rtmr0}
    rtmr1: [${'ff'.repeat(48)}, ${TDX.rtmr1}]
    rtmr2: ${TDX.rtmr2}
    signerRoots: [${ROOTS.intelSgxRoot}]
    tcb:
      allowedStatuses: [UpToDate]
      allowedAdvisories: [INTEL-SA-00837]
  nitro:
    pcrs:
      0: ${NITRO.pcr0}
      1: ${NITRO.pcr1}
      2: ${NITRO.pcr2}
      3: ${NITRO.pcr3}
    signerRoots: [${ROOTS.awsNitroG1}]
  tpm:
    pcrs:
      sha256:
        0: ${TPM_PCRS.pcr0}
        4: ${TPM_PCRS.pcr4}
        7: ${TPM_PCRS.pcr7}
    signerRoots: [${TPM_AK_SHA256}]
  azure-vtpm:
    pcrs:
      sha256:
        0: ${TPM_PCRS.pcr0}
        7: ${TPM_PCRS.pcr7}
  nvidia:
    indices:
      2: ${NVIDIA.measurement2}
      10: ${NVIDIA.measurement10}
      12: ${NVIDIA.measurement12}
    signerRoots: [${ROOTS.nvidiaDevice}]
  sim:
    measurement: ${SIM_MEASUREMENT}
`;
