// JSON schemas shared by the route modules.

import { SESSION_STATES } from '../metrics.js'

export const userIdBody = {
  type: 'integer',
  minimum: 1,
  maximum: Number.MAX_SAFE_INTEGER
}

// Query values arrive as strings. Up to 15 digits stays inside userIdBody's
// range, where every integer is exact in a JavaScript number.
export const userIdQuery = {
  type: 'string',
  pattern: '^[1-9][0-9]{0,14}$'
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

// NOTE: 65,536 characters is the commonly cited WhatsApp text limit, not
// checked against WhatsApp here. JSON Schema's maxLength counts code points,
// as Python's len() does, so an emoji counts as one character on both sides.
export const MAX_TEXT_LENGTH = 65536

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
