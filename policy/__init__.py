"""Pure decision logic: state records, rules, arbitration, explanations.

Nothing here knows about Kafka or Faust.
"""
