/**
 * Parses a request path the way the API server's RequestInfoFactory does:
 * /api/v1/... and /apis/{group}/{version}/..., with namespaces/{ns},
 * resource, name and subresource, and the verb (get/list/watch/create/...).
 */

export interface RequestInfo {
  isResource: boolean;
  /** Non-resource requests: the path. */
  path: string;
  verb: string;
  group: string;
  version: string;
  namespace: string;
  resource: string;
  subresource: string;
  name: string;
}

const methodVerbs: Record<string, string> = {
  POST: "create",
  PUT: "update",
  PATCH: "patch",
  DELETE: "delete",
  GET: "get",
  HEAD: "get",
};

export function requestInfo(
  method: string,
  path: string,
  query: URLSearchParams,
): RequestInfo {
  const info: RequestInfo = {
    isResource: false,
    path,
    verb: (methodVerbs[method] ?? method).toLowerCase(),
    group: "",
    version: "",
    namespace: "",
    resource: "",
    subresource: "",
    name: "",
  };
  const parts = path.split("/").filter((p) => p !== "");
  let rest: string[];
  if (parts[0] === "api" && parts.length >= 3) {
    info.version = parts[1];
    rest = parts.slice(2);
  } else if (parts[0] === "apis" && parts.length >= 4) {
    info.group = parts[1];
    info.version = parts[2];
    rest = parts.slice(3);
  } else {
    return info;
  }
  info.isResource = true;
  // namespaces/{ns}/{resource}/... (but "namespaces/{name}" is the namespace itself)
  if (rest[0] === "namespaces" && rest.length >= 3) {
    info.namespace = rest[1];
    rest = rest.slice(2);
  } else if (rest[0] === "namespaces" && rest.length === 2) {
    info.namespace = rest[1];
  }
  info.resource = rest[0];
  info.name = rest[1] ?? "";
  info.subresource = rest.slice(2).join("/");
  const watch = query.get("watch");
  if (method === "GET" || method === "HEAD") {
    if (watch === "true" || watch === "1") info.verb = "watch";
    else if (!info.name) info.verb = "list";
  }
  if (method === "DELETE" && !info.name) info.verb = "deletecollection";
  return info;
}
