/**
 * Test PKI made with the `openssl` CLI: a self-signed CA and certificates it
 * issues (server or client), as PEM strings and files in a directory the
 * caller owns (and removes).
 */
import { join } from "node:path";

export interface CertificateAuthority {
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
  /** Directory the CA (and the certificates it issues) are written to. */
  dir: string;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  certPath: string;
  keyPath: string;
}

export interface IssueOptions {
  /** Subject CN; defaults to the first DNS name or IP address. */
  commonName?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  /** File name stem inside the CA's directory; defaults to a counter. */
  name?: string;
  /** Validity in days (default 2). */
  days?: number;
}

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `openssl ${args[0]} failed: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/** Creates an EC P-256 CA (basicConstraints CA:TRUE) in `dir`. */
export async function makeCertificateAuthority(
  dir: string,
  opts: { commonName?: string; days?: number } = {},
): Promise<CertificateAuthority> {
  await Deno.mkdir(dir, { recursive: true });
  const certPath = join(dir, "ca.crt");
  const keyPath = join(dir, "ca.key");
  await openssl([
    "req",
    "-x509",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    certPath,
    "-days",
    String(opts.days ?? 2),
    "-subj",
    `/CN=${opts.commonName ?? "cbt-test-ca"}`,
    "-addext",
    "basicConstraints=critical,CA:TRUE",
    "-addext",
    "keyUsage=critical,keyCertSign,cRLSign",
  ], dir);
  return {
    dir,
    certPath,
    keyPath,
    certPem: await Deno.readTextFile(certPath),
    keyPem: await Deno.readTextFile(keyPath),
  };
}

let issued = 0;

function randomHex(bytes: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)))
    .map((b) => b.toString(16).padStart(2, "0")).join("").replace(/^0/, "1");
}

async function issue(
  ca: CertificateAuthority,
  opts: IssueOptions,
  extendedKeyUsage: string,
): Promise<IssuedCert> {
  const dnsNames = opts.dnsNames ?? [];
  const ipAddresses = opts.ipAddresses ?? [];
  const stem = opts.name ?? `cert-${++issued}`;
  const keyPath = join(ca.dir, `${stem}.key`);
  const csrPath = join(ca.dir, `${stem}.csr`);
  const certPath = join(ca.dir, `${stem}.crt`);
  const extPath = join(ca.dir, `${stem}.ext`);
  const cn = opts.commonName ?? dnsNames[0] ?? ipAddresses[0] ?? stem;
  const san = [
    ...dnsNames.map((n) => `DNS:${n}`),
    ...ipAddresses.map((ip) => `IP:${ip}`),
  ];
  await Deno.writeTextFile(
    extPath,
    [
      "basicConstraints=critical,CA:FALSE",
      "keyUsage=critical,digitalSignature,keyEncipherment",
      `extendedKeyUsage=${extendedKeyUsage}`,
      ...(san.length ? [`subjectAltName=${san.join(",")}`] : []),
    ].join("\n") + "\n",
  );
  await openssl([
    "req",
    "-new",
    "-newkey",
    "ec",
    "-pkeyopt",
    "ec_paramgen_curve:prime256v1",
    "-nodes",
    "-keyout",
    keyPath,
    "-out",
    csrPath,
    "-subj",
    `/CN=${cn}`,
  ], ca.dir);
  await openssl([
    "x509",
    "-req",
    "-in",
    csrPath,
    "-CA",
    ca.certPath,
    "-CAkey",
    ca.keyPath,
    // A random serial (not -CAcreateserial) so concurrent issues don't race.
    "-set_serial",
    "0x" + randomHex(16),
    "-out",
    certPath,
    "-days",
    String(opts.days ?? 2),
    "-sha256",
    "-extfile",
    extPath,
  ], ca.dir);
  return {
    certPath,
    keyPath,
    certPem: await Deno.readTextFile(certPath),
    keyPem: await Deno.readTextFile(keyPath),
  };
}

/** A TLS server certificate (serverAuth) for the given names. */
export function issueServerCert(
  ca: CertificateAuthority,
  opts: IssueOptions,
): Promise<IssuedCert> {
  return issue(ca, opts, "serverAuth");
}

/** A TLS client certificate (clientAuth), e.g. for mutual TLS. */
export function issueClientCert(
  ca: CertificateAuthority,
  opts: IssueOptions,
): Promise<IssuedCert> {
  return issue(ca, opts, "clientAuth");
}
