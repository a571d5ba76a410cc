/**
 * What every route of the fetch front is: it answers the requests it owns
 * and returns undefined for the others, so routes chain in order (HTTP/JSON,
 * the viewer, then the RPC routes). Routes that own a path but not the
 * method answer 405 the same way.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { errorResponse } from "./http-json/errors.ts";

/** A route that answers the requests it owns and returns undefined for others. */
export type FetchRoute = (
  request: Request,
) => Promise<Response> | Response | undefined;

/** For routes that exist but not with this method. */
export function methodNotAllowed(allow: string): Response {
  return errorResponse(
    new ConnectError(`method not allowed; use ${allow}`, Code.Unimplemented),
    405,
    { allow },
  );
}
