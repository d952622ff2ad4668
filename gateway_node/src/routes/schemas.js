// JSON schemas shared by the route modules.

import { SESSION_STATES } from '../metrics.js'

export const userIdBody = {
  type: 'integer',
  minimum: 1,
  maximum: Number.MAX_SAFE_INTEGER
}

// Query values arrive as strings; this is the same range as userIdBody.
export const userIdQuery = {
  type: 'string',
  pattern: '^[1-9][0-9]{0,15}$'
}

export const userIdOnlyBody = {
  type: 'object',
  required: ['user_id'],
  properties: { user_id: userIdBody }
}

export const userIdOnlyQuery = {
  type: 'object',
  required: ['user_id'],
  properties: { user_id: userIdQuery }
}

export const nullableString = { type: ['string', 'null'] }

export const errorReply = {
  type: 'object',
  required: ['code', 'message'],
  properties: {
    code: { type: 'string' },
    message: { type: 'string' }
  }
}

export const stateReply = {
  type: 'object',
  required: ['user_id', 'state'],
  properties: {
    user_id: { type: 'integer' },
    state: { type: 'string', enum: SESSION_STATES }
  }
}

/** Response schemas: `ok` for the given success status, errorReply otherwise. */
export function replies (status, ok) {
  return { [status]: ok, '4xx': errorReply, '5xx': errorReply }
}
