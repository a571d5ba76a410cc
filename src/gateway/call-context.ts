/** What every call brings from its front: its headers and its lifetime. */
export interface CallContext {
  headers: Headers;
  signal: AbortSignal;
  /** When the caller's deadline passes (epoch ms), if it set one. */
  deadline?: number;
}
