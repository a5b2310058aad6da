// Every call to the API: the key from sessionStorage as a bearer token, JSON both ways.

const KEY_NAME = "ojs-admin-api-key";

export const apiKey = () => sessionStorage.getItem(KEY_NAME) ?? "";

export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_NAME, key);
  else sessionStorage.removeItem(KEY_NAME);
}

export function authHeaders(extra = {}) {
  const headers = { Accept: "application/openjobspec+json, application/json", ...extra };
  const key = apiKey();
  if (key) headers.Authorization = `Bearer ${key}`;
  return headers;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }

  // The server has no such route at all (not: no such job or queue), or has it but not
  // over its backend (`unsupported`, e.g. the job listing on NATS or SQS).
  get missingRoute() {
    return this.status === 405 || (this.status === 404 && this.message.startsWith("No such endpoint"))
      || this.body?.error?.code === "unsupported";
  }
}

const unauthorized = new Set();
export const onUnauthorized = (listener) => unauthorized.add(listener);

export async function api(method, path, body) {
  const init = { method, headers: authHeaders(), cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/openjobspec+json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try { data = JSON.parse(text); } catch { data = { raw: text }; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) unauthorized.forEach((listener) => listener(error));
    throw error;
  }
  return data;
}

// The admin API (ojs-admin-api) is optional: a family of its routes that answers
// "no such endpoint" once is not asked again, and the data-plane fallback answers.
const absent = new Set();

export async function preferAdmin(family, admin, fallback) {
  if (!absent.has(family)) {
    try {
      return await admin();
    } catch (error) {
      if (!(error instanceof ApiError && error.missingRoute)) throw error;
      absent.add(family);
    }
  }
  return fallback();
}

export const hasAdmin = (family) => !absent.has(family);

// A list out of an answer of either API: a bare array, `items`, or a named field.
export function list(data, ...names) {
  if (Array.isArray(data)) return data;
  for (const name of ["items", ...names]) if (Array.isArray(data?.[name])) return data[name];
  return [];
}
