"""Registry checks: do the images a scope needs exist in its registry, readable with its pull secret?"""
