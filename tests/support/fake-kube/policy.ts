/**
 * The fake's authorizer: RBAC-like rules matched against request
 * attributes. Used for every API request and to answer
 * SubjectAccessReviews. Members of `system:masters` are always allowed, as
 * on a real cluster.
 */
import type { UserInfo } from "./tokens.ts";

/** What is being asked, in the terms of authorizer.Attributes. */
export interface RequestAttributes {
  verb: string;
  /** API group ("" for core). */
  group: string;
  version?: string;
  resource: string;
  subresource?: string;
  /** "" or undefined for cluster-scoped requests. */
  namespace?: string;
  name?: string;
  /** Set instead of resource for non-resource requests (/version, …). */
  path?: string;
}

/**
 * One rule. A request matches when its user is one of `users` or in one of
 * `groups`, and every given attribute list contains the request's value
 * ("*" matches anything). As in RBAC, `resources` names subresources as
 * "serviceaccounts/token", and a rule with `namespaces` (a RoleBinding)
 * never matches cluster-scoped requests.
 */
export interface PolicyRule {
  /** Shown in the allow reason. */
  name?: string;
  users?: string[];
  groups?: string[];
  verbs: string[];
  apiGroups?: string[];
  resources?: string[];
  resourceNames?: string[];
  namespaces?: string[];
  nonResourceURLs?: string[];
  /** "deny" rules win over allow rules and set SAR status.denied. */
  effect?: "allow" | "deny";
}

export interface Decision {
  allowed: boolean;
  denied: boolean;
  reason: string;
}

const anyOf = (list: string[] | undefined, value: string) =>
  list === undefined || list.includes("*") || list.includes(value);

/** `system:serviceaccount:<ns>:<name>`, the username of a ServiceAccount. */
export function serviceAccountUser(namespace: string, name: string): string {
  return `system:serviceaccount:${namespace}:${name}`;
}

export class Policy {
  rules: PolicyRule[];

  constructor(rules: PolicyRule[] = []) {
    this.rules = [...rules];
  }

  allow(rule: Omit<PolicyRule, "effect">): this {
    this.rules.push({ ...rule, effect: "allow" });
    return this;
  }

  deny(rule: Omit<PolicyRule, "effect">): this {
    this.rules.push({ ...rule, effect: "deny" });
    return this;
  }

  set(rules: PolicyRule[]) {
    this.rules = [...rules];
  }

  clear() {
    this.rules = [];
  }

  private matches(rule: PolicyRule, user: UserInfo, a: RequestAttributes) {
    const groups = user.groups ?? [];
    const subject =
      (rule.users ?? []).some((u) => u === "*" || u === user.username) ||
      (rule.groups ?? []).some((g) => g === "*" || groups.includes(g));
    if (!subject || !anyOf(rule.verbs, a.verb)) return false;
    if (a.path !== undefined) {
      return (rule.nonResourceURLs ?? []).some((u) =>
        u === "*" || u === a.path ||
        (u.endsWith("*") && a.path!.startsWith(u.slice(0, -1)))
      );
    }
    if (rule.nonResourceURLs && !rule.resources) return false;
    const resource = a.subresource
      ? `${a.resource}/${a.subresource}`
      : a.resource;
    const resources = rule.resources ?? ["*"];
    const resourceOk = resources.includes("*") ||
      resources.includes(resource) ||
      (a.subresource !== undefined &&
        resources.includes(`*/${a.subresource}`)) ||
      resources.includes(`${a.resource}/*`);
    if (!resourceOk || !anyOf(rule.apiGroups, a.group)) return false;
    if (rule.resourceNames && !rule.resourceNames.includes(a.name ?? "")) {
      return false;
    }
    if (rule.namespaces !== undefined) {
      return !!a.namespace && anyOf(rule.namespaces, a.namespace);
    }
    return true;
  }

  authorize(user: UserInfo, a: RequestAttributes): Decision {
    if ((user.groups ?? []).includes("system:masters")) {
      return { allowed: true, denied: false, reason: "" };
    }
    let allowedBy: PolicyRule | undefined;
    for (const [i, rule] of this.rules.entries()) {
      if (!this.matches(rule, user, a)) continue;
      if (rule.effect === "deny") {
        return {
          allowed: false,
          denied: true,
          reason: `denied by rule "${rule.name ?? `rule-${i}`}"`,
        };
      }
      allowedBy ??= { ...rule, name: rule.name ?? `rule-${i}` };
    }
    if (allowedBy) {
      return {
        allowed: true,
        denied: false,
        reason:
          `RBAC: allowed by ClusterRoleBinding "${allowedBy.name}" of ClusterRole "${allowedBy.name}" to User "${user.username}"`,
      };
    }
    // RBAC has no opinion and says nothing, as a real cluster does.
    return { allowed: false, denied: false, reason: "" };
  }
}
