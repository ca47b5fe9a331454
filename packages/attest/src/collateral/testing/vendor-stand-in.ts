// Test-only: a STAND-IN for the vendor collateral services (AMD KDS, Intel PCS / PCCS) — a test
// double on loopback, not the real services. It serves whatever bytes a test registers for a path
// and query (the tests register the real vendor bytes from shared/vectors, or tampered copies),
// answers 404 for anything else, and records every request so tests can assert the network use.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { utf8 } from '@custody/core';
import { readVector } from '../../../../../test/vectors.js';

export interface StandInRoute {
  status?: number;
  body?: Uint8Array | string;
  headers?: Record<string, string>;
  /** Wait this long before answering (timeouts). */
  delayMs?: number;
  /** Send the body in chunks without a Content-Length. */
  chunked?: boolean;
}

export class VendorServiceStandIn {
  readonly routes = new Map<string, StandInRoute>();
  /** Path and query of every request received, in order. */
  readonly requests: string[] = [];

  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(): Promise<VendorServiceStandIn> {
    const holder: { self?: VendorServiceStandIn } = {};
    const server = createServer((req, res) => void holder.self!.answer(req, res));
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    holder.self = new VendorServiceStandIn(server, `http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    return holder.self;
  }

  serve(pathAndQuery: string, route: StandInRoute): this {
    this.routes.set(pathAndQuery, route);
    return this;
  }

  count(pathPrefix: string): number {
    return this.requests.filter((r) => r.startsWith(pathPrefix)).length;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private async answer(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = req.url ?? '/';
    this.requests.push(path);
    const route = this.routes.get(path);
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    if (route.delayMs) await new Promise((r) => setTimeout(r, route.delayMs));
    if (res.destroyed) return;
    const body = typeof route.body === 'string' ? utf8(route.body) : (route.body ?? new Uint8Array(0));
    res.statusCode = route.status ?? 200;
    for (const [k, v] of Object.entries(route.headers ?? {})) res.setHeader(k, v);
    if (route.chunked) {
      for (let i = 0; i < body.length; i += 1024) res.write(body.subarray(i, i + 1024));
      res.end();
    } else {
      res.setHeader('content-length', body.length);
      res.end(body);
    }
  }
}

const G = 'attestation/tdx/go-tdx-guest/';
const T = 'attestation/tdx/trustee/';
const S = 'attestation/sev-snp/';

/** Intel PCS issuer-chain headers carry PEM percent-encoded. */
export const encodeChainHeader = (pem: Uint8Array | string): string => encodeURIComponent(typeof pem === 'string' ? pem : new TextDecoder().decode(pem));

/** The real 2023 Intel collateral (go-tdx-guest) as Intel PCS v4 / a PCCS serves it for FMSPC 50806F000000. */
export function intel2023(): Record<'tcbInfo' | 'qeIdentity' | 'pckCrl' | 'rootCaCrl' | 'tcbChain' | 'qeChain' | 'crlChain', Uint8Array> {
  return {
    tcbInfo: readVector(G + 'sample_tcbInfo_response'),
    qeIdentity: readVector(G + 'sample_qeIdentity_response'),
    pckCrl: readVector(G + 'pckcrl'),
    rootCaCrl: readVector(G + 'rootcrl.der'),
    tcbChain: readVector(G + 'tcbinfo_issuer_chain.pem'),
    qeChain: readVector(G + 'qeidentity_issuer_chain.pem'),
    crlChain: readVector(G + 'pckcrl_issuer_chain.pem'),
  };
}

export const PCS_PATHS = {
  tcbInfo: (fmspc: string) => `/tdx/certification/v4/tcb?fmspc=${fmspc}`,
  qeIdentity: '/tdx/certification/v4/qe/identity',
  pckCrl: (ca: string) => `/sgx/certification/v4/pckcrl?ca=${ca}&encoding=der`,
  rootCaCrl: '/sgx/certification/v4/rootcacrl',
} as const;

/** Registers the 2023 Intel collateral at the PCS v4 / PCCS paths, with `over` replacing pieces. */
export function servePcs2023(s: VendorServiceStandIn, over: Partial<ReturnType<typeof intel2023>> = {}, fmspc = '50806F000000'): VendorServiceStandIn {
  const c = { ...intel2023(), ...over };
  return s
    .serve(PCS_PATHS.tcbInfo(fmspc), { body: c.tcbInfo, headers: { 'content-type': 'application/json', 'TCB-Info-Issuer-Chain': encodeChainHeader(c.tcbChain) } })
    .serve(PCS_PATHS.qeIdentity, { body: c.qeIdentity, headers: { 'content-type': 'application/json', 'SGX-Enclave-Identity-Issuer-Chain': encodeChainHeader(c.qeChain) } })
    .serve(PCS_PATHS.pckCrl('platform'), { body: c.pckCrl, headers: { 'content-type': 'application/pkix-crl', 'SGX-PCK-CRL-Issuer-Chain': encodeChainHeader(c.crlChain) } })
    .serve(PCS_PATHS.rootCaCrl, { body: c.rootCaCrl, headers: { 'content-type': 'application/pkix-crl' } });
}

/** The same collateral as hand-given named files (what `--collateral DIR` reads). */
export function handGiven2023(over: Partial<ReturnType<typeof intel2023>> = {}): Record<string, Uint8Array> {
  const c = { ...intel2023(), ...over };
  return { tcbInfo: c.tcbInfo, qeIdentity: c.qeIdentity, pckCrl: c.pckCrl, rootCaCrl: c.rootCaCrl, tcbInfoIssuerChain: c.tcbChain, qeIdentityIssuerChain: c.qeChain, pckCrlIssuerChain: c.crlChain };
}

export const TDX_QUOTE_4 = (): Uint8Array => readVector(T + 'tdx_quote_4.dat');
export const TDX_SPR_E4 = (): Uint8Array => readVector(G + 'tdx_prod_quote_SPR_E4.dat');

/** The go-sev-guest Milan report, its real VCEK and the real Milan ASK/ARK (as KDS serves cert_chain). */
export function amdMilan(): { report: Uint8Array; vcek: Uint8Array; chain: Uint8Array; otherChipVcek: Uint8Array } {
  return {
    report: readVector(S + 'go-sev-guest/attestation.bin'),
    vcek: readVector(S + 'go-sev-guest/vcek.testcer'),
    chain: readVector(S + 'amd-roots/ask_ark_milan.pem'),
    otherChipVcek: readVector(S + 'trustee/test-vcek.der'),
  };
}

