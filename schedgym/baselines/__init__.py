"""Heuristic policies, one module per problem family, registered by name per environment."""
