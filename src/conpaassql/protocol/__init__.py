"""What the manager and its agents say to each other, declared once for both sides.

``report`` holds the agent's probe report (``StateReport``), ``agent`` every agent
method's request and reply and the table of methods; the agent validates its
requests with these models and the manager's typed client sends and parses them.
"""
