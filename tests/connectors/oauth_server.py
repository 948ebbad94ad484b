"""A real OAuth 2.1 authorization server for the connector tests, built from authlib's server
parts (Flask integration, SQLAlchemy models on an in-memory SQLite database).

``python oauth_server.py`` prints ``PORT`` on its first line and serves on 127.0.0.1:PORT:

- ``/.well-known/oauth-authorization-server``: RFC 8414 metadata (validated by authlib);
- ``/register``: RFC 7591 dynamic client registration (open, as MCP clients expect);
- ``/authorize``: the authorization code grant with PKCE (S256 required); the "user" consents
  at once (the test follows the URL Keel prints, as a person's browser would);
- ``/token``: authorization_code and refresh_token grants (refresh tokens rotate);
- ``/introspect``: RFC 7662, for the MCP server (client ``resource-server``, secret on argv[1]);
- ``/test/revoke-all``: the user withdraws consent (every token revoked), and
  ``/test/grants``: how many tokens each grant type issued (so a test can see a refresh);
- ``/test/hold-refresh`` and ``/test/release``: refresh requests that arrive in between wait at
  the token endpoint until the release (a refresh in flight, for as long as a test needs), and
  ``/test/refreshes``: how many refresh requests arrived and how many wait now.

Requests are served on threads (a held refresh must not stop the others); the database work
of every request is serialised by one lock.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import ClassVar

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.integrations.sqla_oauth2 import (
    OAuth2AuthorizationCodeMixin,
    OAuth2ClientMixin,
    OAuth2TokenMixin,
    create_query_client_func,
    create_query_token_func,
)
from authlib.oauth2.rfc6749 import grants
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata
from flask import Flask, jsonify, request
from sqlalchemy import Column, Integer, String, create_engine
from sqlalchemy.orm import declarative_base, scoped_session, sessionmaker
from sqlalchemy.pool import StaticPool

RS_SECRET = sys.argv[1] if len(sys.argv) > 1 else "rs-secret"
Base = declarative_base()
engine = create_engine("sqlite://", connect_args={"check_same_thread": False}, poolclass=StaticPool)
db = scoped_session(sessionmaker(bind=engine))


class User:
    def __init__(self, uid: int) -> None:
        self.id = uid

    def get_user_id(self) -> int:
        return self.id


class Client(Base, OAuth2ClientMixin):
    __tablename__ = "client"
    id = Column(Integer, primary_key=True)


class Code(Base, OAuth2AuthorizationCodeMixin):
    __tablename__ = "code"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer)
    code_challenge = Column(String(128))
    code_challenge_method = Column(String(48))


class Token(Base, OAuth2TokenMixin):
    __tablename__ = "token"
    id = Column(Integer, primary_key=True)
    user_id = Column(Integer)
    grant = Column(String(40))


Base.metadata.create_all(engine)
ISSUED: dict[str, int] = {}
DB_LOCK = threading.Lock()
HOLDING = threading.Event()
RELEASED = threading.Event()
REFRESHES = {"arrived": 0, "waiting": 0}
app = Flask(__name__)
app.config["OAUTH2_REFRESH_TOKEN_GENERATOR"] = True
server: AuthorizationServer


def save_token(token: dict, req) -> None:
    ISSUED[req.grant_type] = ISSUED.get(req.grant_type, 0) + 1
    db.add(Token(client_id=req.client.client_id, user_id=req.user.get_user_id() if req.user else None,
                 grant=req.grant_type, **token))
    db.commit()


class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post", "none"]

    def save_authorization_code(self, code, req):
        db.add(Code(code=code, client_id=req.client.client_id, redirect_uri=req.payload.redirect_uri,
                    scope=req.payload.scope, user_id=req.user.get_user_id(),
                    code_challenge=req.payload.data.get("code_challenge"),
                    code_challenge_method=req.payload.data.get("code_challenge_method")))
        db.commit()

    def query_authorization_code(self, code, client):
        item = db.query(Code).filter_by(code=code, client_id=client.client_id).first()
        return item if item and not item.is_expired() else None

    def delete_authorization_code(self, authorization_code):
        db.delete(authorization_code)
        db.commit()

    def authenticate_user(self, authorization_code):
        return User(authorization_code.user_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post", "none"]
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token):
        item = db.query(Token).filter_by(refresh_token=refresh_token).first()
        return item if item and not item.is_revoked() else None

    def authenticate_user(self, credential):
        return User(credential.user_id)

    def revoke_old_credential(self, credential):
        credential.access_token_revoked_at = credential.refresh_token_revoked_at = int(time.time())
        db.commit()


def metadata() -> dict:
    base = request.host_url.rstrip("/")
    doc = AuthorizationServerMetadata({
        "issuer": base, "authorization_endpoint": f"{base}/authorize", "token_endpoint": f"{base}/token",
        "registration_endpoint": f"{base}/register", "introspection_endpoint": f"{base}/introspect",
        "response_types_supported": ["code"], "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"], "scopes_supported": ["vault"],
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
    })
    doc.validate()
    return dict(doc)


class Registration(ClientRegistrationEndpoint):
    def authenticate_token(self, req):
        return True  # open registration, as the MCP authorization spec expects

    def get_server_metadata(self):
        return metadata()

    def save_client(self, client_info, client_metadata, req):
        client = Client(**client_info)
        client.set_client_metadata(client_metadata)
        db.add(client)
        db.commit()
        return client


class Introspection(IntrospectionEndpoint):
    CLIENT_AUTH_METHODS: ClassVar = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string, token_type_hint):
        return create_query_token_func(db, Token)(token_string, token_type_hint)

    def check_permission(self, token, client, req):
        return client.client_id == "resource-server"

    def introspect_token(self, token):
        return {"active": True, "client_id": token.client_id, "token_type": token.token_type,
                "scope": token.get_scope(), "sub": str(token.user_id), "exp": token.issued_at + token.expires_in,
                "iat": token.issued_at, "iss": request.host_url.rstrip("/")}


server = AuthorizationServer(app, query_client=create_query_client_func(db, Client), save_token=save_token)
server.register_grant(AuthorizationCodeGrant, [CodeChallenge(required=True)])
server.register_grant(RefreshTokenGrant)
server.register_endpoint(Registration)
server.register_endpoint(Introspection)

rs = Client(client_id="resource-server", client_secret=RS_SECRET, client_id_issued_at=int(time.time()))
rs.set_client_metadata({"grant_types": [], "token_endpoint_auth_method": "client_secret_basic"})
db.add(rs)
db.commit()


@app.teardown_appcontext
def end_session(exc: BaseException | None) -> None:
    db.remove()  # each request thread's session


@app.get("/.well-known/oauth-authorization-server")
def well_known():
    return jsonify(metadata())


@app.get("/authorize")
def authorize():
    with DB_LOCK:
        return server.create_authorization_response(grant_user=User(1))


@app.post("/token")
def token():
    if request.form.get("grant_type") == "refresh_token":
        with DB_LOCK:
            REFRESHES["arrived"] += 1
        if HOLDING.is_set():
            with DB_LOCK:
                REFRESHES["waiting"] += 1
            RELEASED.wait(timeout=120)
            with DB_LOCK:
                REFRESHES["waiting"] -= 1
    with DB_LOCK:
        return server.create_token_response()


@app.post("/register")
def register():
    with DB_LOCK:
        return server.create_endpoint_response("client_registration")


@app.post("/introspect")
def introspect():
    with DB_LOCK:
        return server.create_endpoint_response("introspection")


@app.post("/test/revoke-all")
def revoke_all():
    with DB_LOCK:
        now = int(time.time())
        for t in db.query(Token).all():
            t.access_token_revoked_at = t.refresh_token_revoked_at = now
        db.commit()
    return jsonify({"revoked": True})


@app.post("/test/hold-refresh")
def hold_refresh():
    RELEASED.clear()
    HOLDING.set()
    return jsonify({"holding": True})


@app.post("/test/release")
def release():
    HOLDING.clear()
    RELEASED.set()
    return jsonify({"holding": False})


@app.get("/test/refreshes")
def refreshes():
    with DB_LOCK:
        return jsonify(REFRESHES)


@app.get("/test/grants")
def grants_issued():
    return jsonify(ISSUED)


if __name__ == "__main__":
    import os

    from werkzeug.serving import make_server

    os.environ.setdefault("AUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on 127.0.0.1 only
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    print(srv.server_port, flush=True)
    srv.serve_forever()
