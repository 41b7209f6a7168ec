/**
 * The event catalog (docs/catalog.md): JSON Schemas per event type in versions, validation at
 * ingest, the producers and consumers observed, and the catalog as an AsyncAPI 3.0 document.
 */
export { type AsyncApiServer, asyncApiDocument, serverOf } from './asyncapi.ts';
export { AsyncApiCache } from './asyncapi-cache.ts';
export { Catalog, type CatalogPut, type CatalogTypeWithVersions, type CatalogVisible } from './catalog.ts';
export { createHubCatalog, type HubCatalog, type HubCatalogOptions } from './hub-catalog.ts';
export { CatalogObserver, type ConsumerSource } from './observer.ts';
export { CATALOG_LIMITS, compileSchema, type PayloadCheck, unsafePattern } from './schemas.ts';
export { IngestValidation } from './validation.ts';
