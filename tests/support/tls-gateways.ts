/**
 * Two embedded-store gateways over one data dir, one plain (h2c) and one
 * TLS with a certificate for localhost and 127.0.0.1 from a fresh test CA:
 * for tests that run the same calls in both, or relay to either.
 */
import {
  type CertificateAuthority,
  issueServerCert,
  makeCertificateAuthority,
} from "./certs.ts";
import { startTestGateway, type TestGateway } from "./gateway.ts";

export interface TlsGateways {
  /** The data dir both gateways serve; write images into it (images.ts `writeImage`). */
  dataDir: string;
  /** Removed on close; the CA is in `<pkiDir>/ca`, room for more beside it. */
  pkiDir: string;
  /** The CA that issued the TLS gateway's certificate: what clients trust. */
  ca: CertificateAuthority;
  h2c: TestGateway;
  tls: TestGateway;
  /** Closes both gateways and removes both directories. */
  close(): Promise<void>;
}

export async function startTlsGateways(options: {
  /** Temp directory name prefix, e.g. "cbt-relay". */
  prefix: string;
  /** The TLS gateway's block metadata type (default FIXED_LENGTH, as the h2c one). */
  tlsBlockMetadataType?: "FIXED_LENGTH" | "VARIABLE_LENGTH";
}): Promise<TlsGateways> {
  const dataDir = await Deno.makeTempDir({ prefix: `${options.prefix}-` });
  const pkiDir = await Deno.makeTempDir({ prefix: `${options.prefix}-pki-` });
  const removeDirs = async () => {
    await Deno.remove(dataDir, { recursive: true });
    await Deno.remove(pkiDir, { recursive: true });
  };
  const started: TestGateway[] = [];
  try {
    const ca = await makeCertificateAuthority(`${pkiDir}/ca`);
    const cert = await issueServerCert(ca, {
      dnsNames: ["localhost"],
      ipAddresses: ["127.0.0.1"],
    });
    const h2c = await startTestGateway({ dataDir });
    started.push(h2c);
    const tls = await startTestGateway({
      dataDir,
      blockMetadataType: options.tlsBlockMetadataType,
      tls: { certPath: cert.certPath, keyPath: cert.keyPath },
    });
    started.push(tls);
    return {
      dataDir,
      pkiDir,
      ca,
      h2c,
      tls,
      async close() {
        await h2c.close();
        await tls.close();
        await removeDirs();
      },
    };
  } catch (e) {
    for (const gw of started) await gw.close();
    await removeDirs();
    throw e;
  }
}
